// Package chaos is the fault campaign: every tapline role runs as its own
// process (two strict gateways, two processors, two sinks, the query API) on a
// three-broker Kafka cluster, real Postgres, sshd and ClickHouse, under
// concurrent psql, pgbench, pgx, ssh and scp sessions, while brokers, roles and
// the store are killed, paused and cut off at seeded random moments. At the end
// it checks, against what the targets themselves logged and against a replay of
// the raw topic by an uninterrupted processor, that nothing was lost, doubled
// or left unrecorded, and prints the result as a table (docs/reliability.md).
//
// TestChaosShort runs in `make test` (one fault of each kind, a few minutes);
// TestChaosCampaign is `make chaos` (CHAOS_DURATION, CHAOS_SEED).
package chaos
