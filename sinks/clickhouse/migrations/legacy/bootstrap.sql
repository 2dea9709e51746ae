-- Reduced schema for ClickHouse servers older than 21.x (Debian's 18.16), used only by
-- integration tests of the server protocol path. Not for production: no DateTime64,
-- Bool, Map, LowCardinality, codecs, skip indexes, TTL or deduplication tokens.
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY version
