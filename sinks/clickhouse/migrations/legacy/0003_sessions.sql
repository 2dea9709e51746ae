CREATE TABLE IF NOT EXISTS sessions
(
    session_id   String,
    version      UInt64,
    protocol     String,
    target       String,
    gateway_id   String,
    issuer       String,
    subject      String,
    email        String,
    name         String,
    groups       Array(String),
    token_id     String,
    client_addr  String,
    started_at   DateTime,
    ended_at     Nullable(DateTime),
    status       String,
    end_reason   String,
    frames       Int64,
    bytes_client Int64,
    bytes_server Int64,
    commands     Int64,
    last_seq     Int64,
    final_hash   String,
    signature_ok Nullable(UInt8),
    integrity    Array(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(started_at)
ORDER BY session_id
