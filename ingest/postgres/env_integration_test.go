package postgres_test

import (
	"testing"

	"github.com/tapline/tapline/integration/testenv"
)

// The real services come from integration/testenv: skipped under -short,
// skipped with a hint locally when not set up, failing in CI.

func postgresEnv(t *testing.T) testenv.PG { return testenv.Postgres(t) }

func kafkaBrokers(t *testing.T) []string { return testenv.Kafka(t) }
