-- The TTL and storage policy Migrate last applied to each table, so that it alters a
-- table only when the configured retention or tiering changed.
CREATE TABLE IF NOT EXISTS table_settings
(
    table      String,
    ttl        String,
    updated_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY table
