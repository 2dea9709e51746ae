-- One row per frame (or fragment) of tapline.frames, ordered for replay.
-- Retried inserts collapse on (session_id, seq); read with FINAL.
-- session_start/session_end hold the JSON of the typed SessionStart/SessionEnd of lifecycle frames.
CREATE TABLE IF NOT EXISTS frames
(
    session_id     String,
    seq            Int64,
    ts             DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    direction      LowCardinality(String),
    protocol       LowCardinality(String),
    kind           LowCardinality(String),
    channel        Int64,
    fragment       Int32,
    final          Bool,
    payload        String CODEC(ZSTD(3)),
    payload_salt   String,
    payload_digest String,
    prev_hash      String,
    hash           String,
    gateway_id     LowCardinality(String),
    masks          Map(LowCardinality(String), Int64),
    session_start  String CODEC(ZSTD(3)),
    denial         String CODEC(ZSTD(3)),
    session_end    String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (session_id, seq)
SETTINGS non_replicated_deduplication_window = 1000
