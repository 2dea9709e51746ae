#!/usr/bin/env bash
# integration/bench/dev.sh — pgbench -S through `tapline dev` (embedded broker,
# processors, sink and chDB in one process) against the same Postgres directly
# and through a production-shaped strict gateway on Apache Kafka (a private
# broker, as in postgres.sh; BENCH_KAFKA=shared: the test services' broker), so
# that the three latencies come from one run.
#
#   integration/services.sh up kafka postgres chdb   # once
#   integration/bench/dev.sh                          # BENCH_SECONDS=30, BENCH_DEV_CLIENTS="1"
#
# The broker is warmed first (20,000 small produces), then BENCH_WARMUP (10)
# seconds of pgbench go through the strict gateway and tapline dev unmeasured.
# CPU µs per transaction of the gateway (or the tapline dev process), the broker
# and Postgres come from /proc.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
SECONDS_EACH=${BENCH_SECONDS:-30}
CLIENTS=${BENCH_DEV_CLIENTS:-1}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka postgres chdb" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME TAPLINE_KAFKA_BROKERS TAPLINE_PG_PORT TAPLINE_PG_GW_USER TAPLINE_PG_GW_PASSWORD TAPLINE_PG_DB CHDB_LIB_PATH
PATH=${TAPLINE_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH
export CHDB_LIB_PATH # a chDB build loads it at start, whatever the subcommand

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench-dev.XXXXXX")
pids=()
cleanup() {
	stop_pids
	rm -rf "$work"
}
trap cleanup EXIT

build_tools
dev_bin=${TAPLINE_DEV_BIN:-}
if [[ -z $dev_bin ]]; then
	log "building tapline with chDB"
	dev_bin=$work/tapline-dev
	go build -tags chdb -o "$dev_bin" ./cmd/tapline
fi
start_issuer
start_kafka

# The strict gateway, shaped as in postgres.sh.
topic=tapline.bench.dev.$(date +%s)
create_topic "$brokers" "$topic"
# A fresh broker compiles its produce path during the first minute of load;
# small records are what this run sends (large ones: BENCH_WARM_MB).
BENCH_WARM_MB=${BENCH_WARM_MB:-0} warm_kafka "$topic"
gw_port=$(free_port)
cat >"$work/strict.yaml" <<YAML
gateway_id: bench-dev-strict
data_dir: $work/gw
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: strict}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
postgres: {listen: "127.0.0.1:$gw_port", allow_plaintext: true}
targets:
  - name: $TAPLINE_PG_DB
    protocol: postgres
    address: "127.0.0.1:$TAPLINE_PG_PORT"
    groups: [bench]
    postgres: {database: $TAPLINE_PG_DB, user: $TAPLINE_PG_GW_USER, password_env: TAPLINE_PG_GW_PASSWORD, tls: disable}
YAML
TAPLINE_PG_GW_PASSWORD=$TAPLINE_PG_GW_PASSWORD "$tapline" gateway --config "$work/strict.yaml" --log-level warn >"$work/gateway.log" 2>&1 &
pids+=($!)
gw_pid=$!
wait_port "$gw_port" "gateway (strict)"

log "tapline dev"
dev_port=$(free_port)
"$dev_bin" dev --data-dir "$work/dev" --kafka-port 0 --pg-port "$dev_port" --ssh-port 0 --api-port 0 \
	--services-env "$env_file" >"$work/dev.log" 2>&1 &
pids+=($!)
dev_pid=$!
for ((i = 0; i < 600; i++)); do
	(exec 3<>"/dev/tcp/127.0.0.1/$dev_port") 2>/dev/null && break
	sleep 0.1
done
wait_port "$dev_port" "tapline dev"
dev_token=$("$dev_bin" token --data-dir "$work/dev" --sub bench --groups dev)

log "pgbench -i -s 1 (direct)"
PGPASSWORD=$TAPLINE_PG_GW_PASSWORD pgbench -i -q -I dtGvp -s 1 -h 127.0.0.1 -p "$TAPLINE_PG_PORT" \
	-U "$TAPLINE_PG_GW_USER" "$TAPLINE_PG_DB" >"$work/init.log" 2>&1 || {
	cat "$work/init.log" >&2
	exit 1
}

pg_pid=$(head -n1 "$TAPLINE_SERVICES_DIR/postgres/data/postmaster.pid")

# latency TARGET CLIENTS: prints "tps latency_ms transactions proxy_us broker_us
# postgres_us": the CPU of the run from /proc (proxy: the gateway, or the whole
# `tapline dev` process, whose broker, processors and sink are inside it).
latency() {
	local port user pw ssl=disable db=$TAPLINE_PG_DB proxy=-
	case $1 in
	direct) port=$TAPLINE_PG_PORT user=$TAPLINE_PG_GW_USER pw=$TAPLINE_PG_GW_PASSWORD ;;
	strict) port=$gw_port user=bench pw=$token proxy=$gw_pid ;;
	dev) port=$dev_port user=bench pw=$dev_token ssl=require db=demo proxy=$dev_pid ;;
	esac
	local out before after
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$pg_pid")
	out=$(PGPASSWORD=$pw PGSSLMODE=$ssl pgbench -n -S -T "$SECONDS_EACH" -c "$2" -h 127.0.0.1 -p "$port" -U "$user" "$db" 2>&1) || {
		echo "bench: pgbench $1 -c $2 failed:" >&2
		echo "$out" >&2
		[[ $1 == strict ]] && tail -n 20 "$work/gateway.log" >&2
	}
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$pg_pid")
	echo "$(awk '/^tps =/ { tps = $3 } /^latency average/ { lat = $4 } /^number of transactions actually processed:/ { n = $6 }
		END { printf "%s %s %d", tps + 0, lat + 0, n + 0 }' <<<"$out") $(cpu_delta "$before" "$after" "$proxy")"
}

log "warm-up: pgbench through the strict gateway and tapline dev, ${BENCH_WARMUP:-10}s each (not measured)"
for target in strict dev; do
	SECONDS_EACH=${BENCH_WARMUP:-10} latency "$target" 1 >/dev/null
done

printf '\npgbench -S through tapline dev, %ss per run (dev: TLS to the gateway, as its banner prints)\n\n' "$SECONDS_EACH"
printf 'CPU µs per transaction from /proc: proxy = the strict gateway, or the whole tapline dev process (its broker, processors and sink included); broker = the Apache Kafka broker\n\n'
printf '| clients | target | TPS | mean latency ms | latency vs direct | latency vs strict | proxy µs/txn | broker µs/txn | postgres µs/txn |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for c in $CLIENTS; do
	for target in direct strict dev; do
		log "$c clients, $target (${SECONDS_EACH}s)"
		echo "$c $target $(latency "$target" "$c")"
	done
done >"$work/results"
awk '
	{ tps[$1, $2] = $3; lat[$1, $2] = $4; tx[$1, $2] = $5; px[$1, $2] = $6; br[$1, $2] = $7; pg[$1, $2] = $8
	  if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
	function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
	function per(v, k) { return v == "-" || tx[k] <= 0 ? "-" : sprintf("%.1f", v / tx[k]) }
	END {
		split("direct strict dev", targets, " ")
		for (i = 0; i < n; i++) for (j = 1; j <= 3; j++) {
			c = order[i]; t = targets[j]
			printf "| %s | %s | %.0f | %.3f | %s | %s | %s | %s | %s |\n", c, t, tps[c, t], lat[c, t],
				ratio(lat[c, t], lat[c, "direct"]), ratio(lat[c, t], lat[c, "strict"]),
				per(px[c, t], c SUBSEP t), per(br[c, t], c SUBSEP t), per(pg[c, t], c SUBSEP t)
		}
	}' "$work/results"
[[ ${BENCH_KAFKA:-private} == shared ]] && "$work/benchhelper" deltopic "$brokers" "$topic" 2>/dev/null || true
