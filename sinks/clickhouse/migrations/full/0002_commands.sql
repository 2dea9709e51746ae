-- One row per stitched command. Text search: the token and n-gram bloom filters are
-- on lower(text), so search with lower(text) LIKE '%...%' or hasToken(lower(text), ...).
CREATE TABLE IF NOT EXISTS commands
(
    session_id  String,
    command_seq Int64,
    seq_end     Int64,
    protocol    LowCardinality(String),
    target      LowCardinality(String),
    subject     LowCardinality(String),
    channel     Int64,
    kind        LowCardinality(String),
    text        String CODEC(ZSTD(3)),
    params      Array(String) CODEC(ZSTD(3)),
    started_at  DateTime64(6, 'UTC'),
    ended_at    DateTime64(6, 'UTC'),
    status      LowCardinality(String),
    error       String CODEC(ZSTD(3)),
    rows        Int64,
    exit_status Nullable(Int32),
    masks       Map(LowCardinality(String), Int64),
    INDEX text_tokens lower(text) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1,
    INDEX text_ngrams lower(text) TYPE ngrambf_v1(3, 65536, 3, 0) GRANULARITY 1,
    INDEX subject_bf subject TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX target_bf target TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX started_mm started_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (session_id, command_seq)
SETTINGS non_replicated_deduplication_window = 1000
