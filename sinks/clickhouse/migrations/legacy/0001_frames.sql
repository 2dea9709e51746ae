CREATE TABLE IF NOT EXISTS frames
(
    session_id     String,
    seq            Int64,
    ts             DateTime,
    ts_us          Int64,          -- ts in µs: the chain hash covers it, DateTime has seconds
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
    session_end    String,
    masks_keys     Array(String),  -- masks as two arrays: no Map type before 21.x
    masks_values   Array(Int64),
    processor_sig  String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (session_id, seq)
