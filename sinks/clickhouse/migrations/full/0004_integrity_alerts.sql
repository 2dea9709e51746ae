-- One row per (session, problem) reported in a session summary's integrity list:
-- seq gaps, chain breaks, bad signatures. Repeats across summary versions collapse.
CREATE TABLE IF NOT EXISTS integrity_alerts
(
    session_id      String,
    alert           String,
    started_at      DateTime64(6, 'UTC'),
    session_version UInt64,
    protocol        LowCardinality(String),
    target          LowCardinality(String),
    subject         String,
    gateway_id      LowCardinality(String),
    detected_at     DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (session_id, alert)
SETTINGS non_replicated_deduplication_window = 1000
