-- Session summaries; each session is re-emitted with a growing version and the highest
-- wins (ReplacingMergeTree(version)). Read with FINAL so filters see the latest version.
CREATE TABLE IF NOT EXISTS sessions
(
    session_id   String,
    version      UInt64,
    protocol     LowCardinality(String),
    target       LowCardinality(String),
    gateway_id   LowCardinality(String),
    issuer       LowCardinality(String),
    subject      String,
    email        String,
    name         String,
    groups       Array(LowCardinality(String)),
    token_id     String,
    client_addr  String,
    started_at   DateTime64(6, 'UTC'),
    ended_at     Nullable(DateTime64(6, 'UTC')),
    status       LowCardinality(String),
    end_reason   String,
    frames       Int64,
    bytes_client Int64,
    bytes_server Int64,
    commands     Int64,
    last_seq     Int64,
    final_hash   String,
    signature_ok Nullable(Bool),
    integrity    Array(String),
    INDEX subject_bf subject TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX target_bf target TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX started_mm started_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(started_at)
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000
