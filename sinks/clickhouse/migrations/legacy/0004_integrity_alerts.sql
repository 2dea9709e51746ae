CREATE TABLE IF NOT EXISTS integrity_alerts
(
    session_id      String,
    alert           String,
    started_at      DateTime,
    session_version UInt64,
    protocol        String,
    target          String,
    subject         String,
    gateway_id      String,
    detected_at     DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (session_id, alert)
