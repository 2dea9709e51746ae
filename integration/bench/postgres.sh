#!/usr/bin/env bash
# integration/bench/postgres.sh — pgbench through tapline against the same
# Postgres directly and through pgbouncer.
#
#   integration/services.sh up kafka postgres   # once
#   integration/bench/postgres.sh               # BENCH_SECONDS=30 by default
#
# Runs pgbench scripts (BENCH_SCRIPTS, default all four: select-only = -S,
# tpcb = the default TPC-B-like script, each with the simple query protocol
# and, as ".../prepared", with -M prepared, i.e. the extended protocol:
# Bind/Execute/Sync sent together per statement) for BENCH_SECONDS each, at
# BENCH_CLIENTS (default "1 8 32") clients, against:
#   direct     the test Postgres
#   pgbouncer  pgbouncer (transaction pooling) in front of it
#   strict     a tapline gateway in strict mode (a client message is forwarded
#              only after Kafka acknowledged its frame)
#   buffered   a tapline gateway in buffered mode
# and prints TPS, mean latency, and the ratio of TPS to direct and to pgbouncer.
# All connections are plaintext on loopback (the gateway with allow_plaintext,
# the gateway to Postgres with tls: disable), so the figures compare the proxies,
# not TLS. Both gateways record to the shared test Kafka. The gateway binary is
# built from the working tree unless TAPLINE_BIN names one (to compare builds).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
SECONDS_EACH=${BENCH_SECONDS:-30}
CLIENTS=${BENCH_CLIENTS:-1 8 32}
SCRIPTS=${BENCH_SCRIPTS:-select-only select-only/prepared tpcb tpcb/prepared}
SCALE=${BENCH_SCALE:-10}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka postgres" TAPLINE_KAFKA_BROKERS TAPLINE_PG_PORT TAPLINE_PG_GW_USER TAPLINE_PG_GW_PASSWORD TAPLINE_PG_DB
PATH=${TAPLINE_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench.XXXXXX")
pids=()
bouncer_started=
cleanup() {
	stop_pids
	[[ -n $bouncer_started ]] && integration/services.sh pgbouncer stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

build_tools
start_issuer

topic=tapline.bench.frames
"$work/benchhelper" topic "$TAPLINE_KAFKA_BROKERS" "$topic"

# start_gateway MODE: sets gw_port (not run in a subshell, so its pid is tracked).
start_gateway() {
	local mode=$1 port metrics
	port=$(free_port)
	metrics=$(free_port)
	cat >"$work/$mode.yaml" <<EOF
gateway_id: bench-$mode
data_dir: $work/gw-$mode
kafka: {brokers: ["${TAPLINE_KAFKA_BROKERS//,/\",\"}"], topic: $topic, mode: $mode}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
metrics: {listen: "127.0.0.1:$metrics"}
postgres: {listen: "127.0.0.1:$port", allow_plaintext: true}
targets:
  - name: $TAPLINE_PG_DB
    protocol: postgres
    address: "127.0.0.1:$TAPLINE_PG_PORT"
    groups: [bench]
    postgres: {database: $TAPLINE_PG_DB, user: $TAPLINE_PG_GW_USER, password_env: TAPLINE_PG_GW_PASSWORD, tls: disable}
EOF
	"$tapline" gateway --config "$work/$mode.yaml" --log-level warn >"$work/gateway-$mode.log" 2>&1 &
	pids+=($!)
	wait_port "$port" "gateway ($mode)"
	gw_port=$port
}

log "gateways (strict, buffered)"
start_gateway strict
strict_port=$gw_port
start_gateway buffered
buffered_port=$gw_port

log "pgbouncer"
if ! integration/services.sh pgbouncer status | grep -q running; then bouncer_started=1; fi
bouncer_env=$(integration/services.sh pgbouncer start transaction 2>"$work/pgbouncer.log") || {
	cat "$work/pgbouncer.log" >&2
	exit 1
}
bouncer_port=$(sed -n 's/^TAPLINE_PGBOUNCER_PORT=//p' <<<"$bouncer_env" | tr -d "'\"")

log "pgbench -i -s $SCALE (direct)"
PGPASSWORD=$TAPLINE_PG_GW_PASSWORD pgbench -i -q -I dtGvp -s "$SCALE" -h 127.0.0.1 -p "$TAPLINE_PG_PORT" \
	-U "$TAPLINE_PG_GW_USER" "$TAPLINE_PG_DB" >"$work/init.log" 2>&1 || {
	cat "$work/init.log" >&2
	exit 1
}

# run TARGET SCRIPT CLIENTS: prints "tps latency_ms".
run() {
	local target=$1 script=$2 clients=$3 port user pw
	local flags=(-n -T "$SECONDS_EACH" -c "$clients" -j "$((clients < 2 ? 1 : 2))")
	case $target in
	direct) port=$TAPLINE_PG_PORT user=$TAPLINE_PG_GW_USER pw=$TAPLINE_PG_GW_PASSWORD ;;
	pgbouncer) port=$bouncer_port user=$TAPLINE_PG_GW_USER pw=$TAPLINE_PG_GW_PASSWORD ;;
	strict) port=$strict_port user=bench pw=$token ;;
	buffered) port=$buffered_port user=bench pw=$token ;;
	esac
	[[ $script == select-only* ]] && flags+=(-S)
	[[ $script == */prepared ]] && flags+=(-M prepared)
	local out
	out=$(PGPASSWORD=$pw PGSSLMODE=disable pgbench "${flags[@]}" -h 127.0.0.1 -p "$port" -U "$user" "$TAPLINE_PG_DB" 2>&1) || {
		echo "bench: pgbench $target $script -c $clients failed:" >&2
		echo "$out" >&2
		echo "0 0"
		return
	}
	local tps lat
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
	echo "${tps:-0} ${lat:-0}"
}

results=$work/results
: >"$results"
for script in $SCRIPTS; do
	for c in $CLIENTS; do
		for target in direct pgbouncer strict buffered; do
			# pgbouncer 1.18 (Debian's) cannot pool protocol-level prepared
			# statements in transaction mode.
			[[ $target == pgbouncer && $script == */prepared ]] && continue
			log "$script, $c clients, $target (${SECONDS_EACH}s)"
			echo "$script $c $target $(run "$target" "$script" "$c")" >>"$results"
		done
	done
done

printf '\npgbench, %ss per run, scale %s, plaintext loopback; Kafka %s; 2 cores shared by everything\n\n' \
	"$SECONDS_EACH" "$SCALE" "$TAPLINE_KAFKA_BROKERS"
awk '
	{ key = $1 " " $2; tps[key, $3] = $4; lat[key, $3] = $5; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
	function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
	function get(k, t) { return ((k, t) in tps) ? tps[k, t] : 0 } # without creating the entry
	END {
		printf "| script | clients | target | TPS | mean latency ms | vs direct | vs pgbouncer |\n"
		printf "| --- | ---: | --- | ---: | ---: | ---: | ---: |\n"
		split("direct pgbouncer strict buffered", targets, " ")
		for (i = 0; i < n; i++) {
			split(order[i], k, " ")
			for (j = 1; j <= 4; j++) {
				t = targets[j]
				if (!((order[i], t) in tps)) continue
				printf "| %s | %s | %s | %.0f | %.3f | %s | %s |\n", k[1], k[2], t, tps[order[i], t], lat[order[i], t],
					ratio(tps[order[i], t], get(order[i], "direct")), ratio(tps[order[i], t], get(order[i], "pgbouncer"))
			}
		}
	}' "$results"
