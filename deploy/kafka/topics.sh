#!/usr/bin/env sh
# Creates tapline's topics with Apache Kafka's own CLI (the same settings as
# topics.yaml). Usage: topics.sh BOOTSTRAP [REPLICATION] (REPLICATION defaults to 3;
# use 1 for a single-broker dev cluster).
set -eu
bs=${1:?usage: topics.sh BOOTSTRAP [REPLICATION]}
rf=${2:-3}
isr=$(( rf > 1 ? 2 : 1 ))
kt=${KAFKA_TOPICS:-kafka-topics.sh}
create() {
  name=$1 parts=$2; shift 2
  set -- "$@" --config "min.insync.replicas=$isr"
  $kt --bootstrap-server "$bs" --create --if-not-exists --topic "$name" \
      --partitions "$parts" --replication-factor "$rf" "$@"
}
create tapline.frames.raw 24 --config retention.ms=259200000 --config cleanup.policy=delete --config max.message.bytes=1048576
create tapline.frames 24 --config retention.ms=2592000000 --config cleanup.policy=delete --config max.message.bytes=1048576
create tapline.commands 12 --config retention.ms=2592000000 --config cleanup.policy=delete
create tapline.sessions 12 --config cleanup.policy=compact --config min.compaction.lag.ms=3600000
create tapline.audit 6 --config retention.ms=7776000000 --config cleanup.policy=delete
# Raw records the processors failed on (unmasked, like the raw topic: same retention,
# read only by `tapline process --reprocess`); room for a raw record plus headers.
create tapline.frames.deadletter 6 --config retention.ms=259200000 --config cleanup.policy=delete --config max.message.bytes=2097152
# OCSF events, written only with topics.audit_ocsf set (docs/siem.md).
create tapline.audit.ocsf 6 --config retention.ms=7776000000 --config cleanup.policy=delete
# The processors' per-session state: as many partitions as the raw topic (the runner
# refuses to start otherwise) and records up to 8 MiB (docs/processors.md).
create tapline.processor.state 24 --config cleanup.policy=compact --config segment.ms=3600000 --config max.message.bytes=8388608
