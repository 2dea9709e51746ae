#!/usr/bin/env bash
# integration/bench/memory.sh — the gateway's memory while large streams pass.
#
#   integration/services.sh up kafka postgres ssh   # once (as root: it runs sshd)
#   integration/bench/memory.sh                     # BENCH_MEMORY_MB=1024 by default
#
# One gateway (BENCH_MEMORY_MODE, default buffered: the mode that holds frames
# while Kafka catches up) records to a private Kafka broker. Through it, one after
# another, BENCH_MEMORY_MB MiB go
#   COPY out   the Postgres edge, server to agent (COPY (SELECT ...) TO STDOUT)
#   COPY in    the Postgres edge, agent to server (COPY ... FROM STDIN, rows
#              discarded by the server's WHERE false)
#   scp up     the SSH edge, agent to target (SFTP)
#   scp down   the SSH edge, target to agent
# The gateway's resident set (VmRSS from /proc) is sampled every 50 ms during
# each stream; the table shows it idle before the stream and at its peak. Flat
# means the peak does not grow with the stream: compare two values of
# BENCH_MEMORY_MB. CPU µs per MiB of the gateway and the broker come from /proc.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
MB=${BENCH_MEMORY_MB:-1024}
MODE=${BENCH_MEMORY_MODE:-buffered}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka postgres ssh" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME TAPLINE_KAFKA_BROKERS \
	TAPLINE_PG_PORT TAPLINE_PG_GW_USER TAPLINE_PG_GW_PASSWORD TAPLINE_PG_DB \
	TAPLINE_SSH_PORT TAPLINE_SSH_USER TAPLINE_SSH_KEY TAPLINE_SSH_KNOWN_HOSTS
PATH=${TAPLINE_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench-mem.XXXXXX")
remote=$(mktemp -d /tmp/tapline-bench-mem-target.XXXXXX)
pids=()
sampler=
cleanup() {
	[[ -n $sampler ]] && kill "$sampler" 2>/dev/null
	stop_pids
	rm -rf "$work" "$remote"
}
trap cleanup EXIT

build_tools
start_issuer
start_kafka
printf '%s' "$token" >"$work/token"
printf '#!/bin/sh\nexec cat %q\n' "$work/token" >"$work/askpass"
chmod 700 "$work/askpass"
topic=tapline.bench.memory
create_topic "$brokers" "$topic"

pg_port=$(free_port)
ssh_port=$(free_port)
cat >"$work/gateway.yaml" <<EOF
gateway_id: bench-memory
data_dir: $work/gw
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: $MODE}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
postgres: {listen: "127.0.0.1:$pg_port", allow_plaintext: true}
ssh: {listen: "127.0.0.1:$ssh_port"}
targets:
  - name: $TAPLINE_PG_DB
    protocol: postgres
    address: "127.0.0.1:$TAPLINE_PG_PORT"
    groups: [bench]
    postgres: {database: $TAPLINE_PG_DB, user: $TAPLINE_PG_GW_USER, password_env: TAPLINE_PG_GW_PASSWORD, tls: disable}
  - name: box
    protocol: ssh
    address: "127.0.0.1:$TAPLINE_SSH_PORT"
    groups: [bench]
    ssh: {user: $TAPLINE_SSH_USER, key_file: $TAPLINE_SSH_KEY, known_hosts: $TAPLINE_SSH_KNOWN_HOSTS}
EOF
log "gateway ($MODE)"
TAPLINE_PG_GW_PASSWORD=$TAPLINE_PG_GW_PASSWORD "$tapline" gateway --config "$work/gateway.yaml" --log-level warn >"$work/gateway.log" 2>&1 &
gw_pid=$!
pids+=($!)
wait_port "$pg_port" "gateway (postgres)"
wait_port "$ssh_port" "gateway (ssh)"
echo "[127.0.0.1]:$ssh_port $(ssh-keygen -y -f "$work/gw/ssh_host_ed25519_key")" >"$work/known_hosts"
chown "$TAPLINE_SSH_USER" "$remote"

# gateway_alive: exits with the gateway's log when it has died.
gateway_alive() {
	kill -0 "$gw_pid" 2>/dev/null && return 0
	local rc=0
	wait "$gw_pid" || rc=$?
	echo "bench: the gateway exited ($rc); its log:" >&2
	tail -n 20 "$work/gateway.log" >&2
	exit 1
}

# measure NAME CMD...: runs CMD while `benchhelper rss` samples the gateway's RSS;
# appends "NAME seconds idle_kib peak_kib gateway_cpu_us broker_cpu_us" to the results.
measure() {
	local name=$1 stop=$work/stop t0 t1 idle peak before after
	shift
	gateway_alive
	rm -f "$stop"
	"$work/benchhelper" rss "$gw_pid" "$stop" >"$work/rss" &
	sampler=$!
	before=$("$work/benchhelper" cpu "$gw_pid" "$broker_pid")
	t0=$(date +%s.%N)
	"$@"
	t1=$(date +%s.%N)
	after=$("$work/benchhelper" cpu "$gw_pid" "$broker_pid")
	touch "$stop"
	wait "$sampler"
	sampler=
	gateway_alive
	read -r idle peak <"$work/rss"
	echo "$name $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') $idle $peak $(cpu_delta "$before" "$after")" >>"$work/results"
}

rows=$((MB * 1024)) # rows of 1 KiB (1023 characters and a newline)
psql_gw() { PGPASSWORD=$token PGSSLMODE=disable psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U bench "$TAPLINE_PG_DB" "$@"; }
copy_out() {
	psql_gw -c "COPY (SELECT repeat('x', 1023) FROM generate_series(1, $rows)) TO STDOUT" | wc -c >"$work/out.bytes"
	[[ $(cat "$work/out.bytes") -eq $((rows * 1024)) ]] || {
		echo "bench: COPY out delivered $(cat "$work/out.bytes") bytes, want $((rows * 1024))" >&2
		exit 1
	}
}
copy_in() {
	local line
	line=$(head -c 1023 /dev/zero | tr '\0' x)
	awk -v n="$rows" -v l="$line" 'BEGIN { for (i = 0; i < n; i++) print l }' | psql_gw -c "CREATE TEMP TABLE sink (t text)" -c "COPY sink FROM STDIN WHERE false"
}

common=(-F /dev/null -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o LogLevel=ERROR
	-o KexAlgorithms=curve25519-sha256 -o UserKnownHostsFile="$work/known_hosts" -o PubkeyAuthentication=no
	-o PreferredAuthentications=keyboard-interactive,password -P "$ssh_port")
export SSH_ASKPASS=$work/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0
scp_up() { scp -q "${common[@]}" "$work/file" "box@127.0.0.1:$remote/file"; }
scp_down() { scp -q "${common[@]}" "box@127.0.0.1:$remote/file" "$work/back"; }

log "${MB} MiB random file"
head -c "$((MB << 20))" /dev/urandom >"$work/file"

: >"$work/results"
# One short session of each kind first, so that idle is a gateway that has served.
psql_gw -c "SELECT 1" >/dev/null
head -c 1024 /dev/urandom >"$work/small" && scp -q "${common[@]}" "$work/small" "box@127.0.0.1:$remote/small"
log "COPY out, ${MB} MiB"
measure "postgres COPY-out" copy_out
log "COPY in, ${MB} MiB"
measure "postgres COPY-in" copy_in
log "scp up, ${MB} MiB"
measure "ssh scp-up" scp_up
log "scp down, ${MB} MiB"
measure "ssh scp-down" scp_down
cmp -s "$work/file" "$work/back" || {
	echo "bench: scp down returned a different file" >&2
	exit 1
}

printf '\nGateway memory (%s mode) while %s MiB stream through one session; VmRSS sampled every 50 ms; Kafka %s\n\n' "$MODE" "$MB" "$brokers (${BENCH_KAFKA:-private})"
awk -v mb="$MB" '
	BEGIN {
		printf "| edge | stream | MiB | seconds | MiB/s | RSS idle MiB | RSS peak MiB | peak − idle MiB | gateway µs/MiB | broker µs/MiB |\n"
		printf "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
	}
	{ printf "| %s | %s | %d | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", $1, $2, mb, $3, ($3 > 0 ? mb / $3 : 0), $4 / 1024, $5 / 1024, ($5 - $4) / 1024, $6 / mb, $7 / mb }' "$work/results"
