// Package clickhouse is tapline's recording store and the sink that fills it.
//
// Tables (migrations/full, embedded, applied by Store.Migrate and recorded in
// schema_migrations):
//
//	frames           ReplacingMergeTree, PARTITION BY toYYYYMMDD(ts),          ORDER BY (session_id, seq)
//	commands         ReplacingMergeTree, PARTITION BY toYYYYMMDD(started_at),  ORDER BY (session_id, command_seq)
//	sessions         ReplacingMergeTree(version), PARTITION BY toYYYYMMDD(started_at), ORDER BY session_id
//	integrity_alerts ReplacingMergeTree, PARTITION BY toYYYYMMDD(started_at),  ORDER BY (session_id, alert)
//
// Query pattern: a retried or replayed batch can leave two rows with the same key
// until a background merge collapses them, and sessions hold one row per summary
// version. Read every table with FINAL (SELECT ... FROM sessions FINAL WHERE ...):
// it collapses duplicates and, for sessions, keeps the highest version before WHERE
// filters run. The Store's read methods do this; raw SQL for auditors must too.
//
// Two transports run the same SQL: OpenServer (clickhouse-go, a server or cluster)
// and package chdb (embedded chDB, built with -tags chdb). See docs/storage.md.
package clickhouse
