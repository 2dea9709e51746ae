CREATE TABLE IF NOT EXISTS frames
(
    session_id     String,
    seq            Int64,
    ts             DateTime,
    direction      String,
    protocol       String,
    kind           String,
    channel        Int64,
    fragment       Int32,
    final          UInt8,
    payload        String,
    payload_salt   String,
    payload_digest String,
    prev_hash      String,
    hash           String,
    gateway_id     String,
    session_start  String,
    denial         String,
    session_end    String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (session_id, seq)
