CREATE TABLE IF NOT EXISTS commands
(
    session_id  String,
    command_seq Int64,
    seq_end     Int64,
    protocol    String,
    target      String,
    subject     String,
    channel     Int64,
    kind        String,
    text        String,
    params      Array(String),
    started_at  DateTime,
    ended_at    DateTime,
    status      String,
    error       String,
    rows        Int64,
    exit_status Nullable(Int32),
    masks_keys  Array(String),
    masks_values Array(Int64)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (session_id, command_seq)
