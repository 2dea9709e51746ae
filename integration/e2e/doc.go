// Package e2e holds tapline's end-to-end tests: real psql and SSH clients talk to
// real Postgres and sshd targets through the gateway, frames go through a real
// Apache Kafka, the processors and the sink run on it, and the query API answers
// from the chDB store the sink wrote. They are the acceptance tests of the query
// feature: identity, commands, replay, verify against tampering, access control and
// masking, each checked from the outside. See docs/e2e.md.
//
// The tests need chDB (build tag chdb, CHDB_LIB_PATH) and the test services
// (make services-up).
package e2e
