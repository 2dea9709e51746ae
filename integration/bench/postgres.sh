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
#   go-relay   a plain Go TCP relay (benchhelper tcprelay: io.Copy each way,
#              nothing parsed or recorded), the floor of a proxy written in Go
#   strict     a tapline gateway in strict mode (a client message is forwarded
#              only after Kafka acknowledged its frame)
#   buffered   a tapline gateway in buffered mode
# and prints TPS, mean latency, the ratio of TPS to direct and to pgbouncer, and
# the CPU per transaction of the proxy, the Kafka broker and Postgres (read from
# /proc during each run). Then, for one client in strict mode, the latency over
# direct in units of one acknowledged produce measured in the same run. Last,
# for each client count, strict recording alone (benchhelper strictcap): that
# many sessions record select-only transactions through the gateway's recorder,
# strict, with no agent, target or relay running; its rate and its recorder and
# broker CPU per transaction bound what a strict gateway reaches here.
# BENCH_PPROF=DIR saves a CPU profile of the gateway for each gateway row there.
# BENCH_JFR=DIR saves a Java Flight Recorder profile of the Kafka broker for each
# gateway row there (needs the JDK's jcmd; read with jfr print or JDK Mission Control).
# BENCH_LINGER sets the gateways' kafka.linger (0s: no group commit, to compare).
# BENCH_ROUNDS sets kafka.rounds_in_flight (0: no limit of the gateway's, to compare).
# frames/batch: frames per record batch the gateway wrote, from its metrics.
# BENCH_WARMUP (default 20) seconds of load through each gateway come first, unmeasured.
# All connections are plaintext on loopback (the gateway with allow_plaintext,
# the gateway to Postgres with tls: disable), so the figures compare the proxies,
# not TLS. Both gateways record to a private Kafka broker the script starts
# (BENCH_KAFKA=shared: the test services' broker). The gateway binary is
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
load_env "kafka postgres" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME TAPLINE_KAFKA_BROKERS TAPLINE_PG_PORT TAPLINE_PG_GW_USER TAPLINE_PG_GW_PASSWORD TAPLINE_PG_DB
PATH=${TAPLINE_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench.XXXXXX")
pids=()
bouncer_started=
cleanup() {
	stop_pids
	[[ -n $bouncer_started ]] && TAPLINE_SERVICES_DIR=$TAPLINE_SERVICES_DIR integration/services.sh pgbouncer stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

build_tools
start_issuer
start_kafka

topic=tapline.bench.frames
create_topic "$brokers" "$topic"

# start_gateway MODE: sets gw_port and gw_pid (not run in a subshell, so its pid is tracked).
start_gateway() {
	local mode=$1 port metrics
	port=$(free_port)
	metrics=$(free_port)
	cat >"$work/$mode.yaml" <<EOF
gateway_id: bench-$mode
data_dir: $work/gw-$mode
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: $mode${BENCH_LINGER:+, linger: $BENCH_LINGER}${BENCH_ROUNDS:+, rounds_in_flight: $BENCH_ROUNDS}}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
metrics: {listen: "127.0.0.1:$metrics"${BENCH_PPROF:+, pprof: true}}
postgres: {listen: "127.0.0.1:$port", allow_plaintext: true}
targets:
  - name: $TAPLINE_PG_DB
    protocol: postgres
    address: "127.0.0.1:$TAPLINE_PG_PORT"
    groups: [bench]
    postgres: {database: $TAPLINE_PG_DB, user: $TAPLINE_PG_GW_USER, password_env: TAPLINE_PG_GW_PASSWORD, tls: disable}
EOF
	TAPLINE_PG_GW_PASSWORD=$TAPLINE_PG_GW_PASSWORD "$tapline" gateway --config "$work/$mode.yaml" --log-level warn >"$work/gateway-$mode.log" 2>&1 &
	pids+=($!)
	gw_pid=$!
	wait_port "$port" "gateway ($mode)"
	gw_port=$port gw_metrics=$metrics
}

log "gateways (strict, buffered)"
start_gateway strict
strict_port=$gw_port strict_pid=$gw_pid strict_metrics=$gw_metrics
start_gateway buffered
buffered_port=$gw_port buffered_pid=$gw_pid buffered_metrics=$gw_metrics

log "pgbouncer"
if ! TAPLINE_SERVICES_DIR=$TAPLINE_SERVICES_DIR integration/services.sh pgbouncer status | grep -q running; then bouncer_started=1; fi
bouncer_env=$(TAPLINE_SERVICES_DIR=$TAPLINE_SERVICES_DIR integration/services.sh pgbouncer start transaction 2>"$work/pgbouncer.log") || {
	cat "$work/pgbouncer.log" >&2
	exit 1
}
bouncer_port=$(sed -n 's/^TAPLINE_PGBOUNCER_PORT=//p' <<<"$bouncer_env" | tr -d "'\"")

log "Go TCP relay"
relay_port=$(free_port)
"$work/benchhelper" tcprelay "127.0.0.1:$relay_port" "127.0.0.1:$TAPLINE_PG_PORT" &
pids+=($!)
relay_pid=$!
wait_port "$relay_port" "Go TCP relay"

log "pgbench -i -s $SCALE (direct)"
PGPASSWORD=$TAPLINE_PG_GW_PASSWORD pgbench -i -q -I dtGvp -s "$SCALE" -h 127.0.0.1 -p "$TAPLINE_PG_PORT" \
	-U "$TAPLINE_PG_GW_USER" "$TAPLINE_PG_DB" >"$work/init.log" 2>&1 || {
	cat "$work/init.log" >&2
	exit 1
}

# CPU is read from /proc for the whole run of each row (benchhelper cpu: user +
# system, all threads, children included): the proxy (gateway or pgbouncer),
# the Kafka broker, and Postgres (postmaster, backends and the backends that
# ended during the run). Other load on the machine (other tests on the shared
# broker) shows up in the broker's figure; the direct rows give its floor.
pg_pid=$(head -n1 "$TAPLINE_SERVICES_DIR/postgres/data/postmaster.pid")
bouncer_pid=$(cat "$TAPLINE_SERVICES_DIR/postgres/pgbouncer/pgbouncer.pid" 2>/dev/null || echo -)

# batches METRICS_PORT: "sum count" of the gateway's frames-per-batch histogram.
batches() {
	curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
		awk '/^tapline_recorder_batch_frames_sum/ { s = $2 } /^tapline_recorder_batch_frames_count/ { c = $2 } END { print s + 0, c + 0 }'
}

# run TARGET SCRIPT CLIENTS: prints "tps latency_ms proxy_us broker_us postgres_us
# frames_per_batch", the CPU figures per transaction.
run() {
	local target=$1 script=$2 clients=$3 port user pw proxy=-
	local flags=(-n -T "$SECONDS_EACH" -c "$clients" -j "$((clients < 2 ? 1 : 2))")
	case $target in
	direct) port=$TAPLINE_PG_PORT user=$TAPLINE_PG_GW_USER pw=$TAPLINE_PG_GW_PASSWORD ;;
	pgbouncer) port=$bouncer_port user=$TAPLINE_PG_GW_USER pw=$TAPLINE_PG_GW_PASSWORD proxy=$bouncer_pid ;;
	go-relay) port=$relay_port user=$TAPLINE_PG_GW_USER pw=$TAPLINE_PG_GW_PASSWORD proxy=$relay_pid ;;
	strict) port=$strict_port user=bench pw=$token proxy=$strict_pid ;;
	buffered) port=$buffered_port user=bench pw=$token proxy=$buffered_pid ;;
	esac
	[[ $script == select-only* ]] && flags+=(-S)
	[[ $script == */prepared ]] && flags+=(-M prepared)
	local out before after profiling=
	if [[ -n ${BENCH_PPROF:-} && ($target == strict || $target == buffered) ]]; then
		# A CPU profile of the gateway for most of the run (go tool pprof FILE).
		local m=${target}_metrics
		mkdir -p "$BENCH_PPROF"
		curl -fsS -o "$BENCH_PPROF/$target-${script//\//-}-c$clients.pprof" \
			"http://127.0.0.1:${!m}/debug/pprof/profile?seconds=$((SECONDS_EACH > 3 ? SECONDS_EACH - 2 : 1))" &
		profiling=$!
	fi
	local jfr=
	if [[ $target == strict || $target == buffered ]]; then
		jfr=broker-$target-${script//\//-}-c$clients
		jfr_start "$jfr"
	fi
	local m=${target//-/_}_metrics b0="0 0" b1="0 0"
	[[ -n ${!m:-} ]] && b0=$(batches "${!m}")
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$pg_pid")
	out=$(PGPASSWORD=$pw PGSSLMODE=disable pgbench "${flags[@]}" -h 127.0.0.1 -p "$port" -U "$user" "$TAPLINE_PG_DB" 2>&1) || {
		echo "bench: pgbench $target $script -c $clients failed:" >&2
		echo "$out" >&2
		echo "0 0 - - - -"
		return
	}
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$pg_pid")
	[[ -n ${!m:-} ]] && b1=$(batches "${!m}")
	[[ -n $profiling ]] && { wait "$profiling" || echo "bench: no profile for $target" >&2; }
	[[ -n $jfr ]] && jfr_stop "$jfr"
	local tps lat txns
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	awk -v tps="${tps:-0}" -v lat="${lat:-0}" -v n="${txns:-0}" -v proxy="$proxy" -v b="$before" -v a="$after" -v b0="$b0" -v b1="$b1" '
		function per(i) { return n > 0 ? sprintf("%.1f", (y[i] - x[i]) / n) : "-" }
		BEGIN {
			split(b, x, " "); split(a, y, " "); split(b0, p, " "); split(b1, q, " ")
			fpb = q[2] > p[2] ? sprintf("%.1f", (q[1] - p[1]) / (q[2] - p[2])) : "-"
			printf "%s %s %s %s %s %s\n", tps, lat, proxy == "-" ? "-" : per(1), per(2), per(3), fpb
		}'
}

# A fresh broker JVM compiles its hot paths during the first minute of load; warm
# it (and the gateways) up so that the first rows do not pay for it.
log "warm-up: pgbench through both gateways, ${BENCH_WARMUP:-20}s each (not measured)"
for target in buffered strict; do
	SECONDS_EACH=${BENCH_WARMUP:-20} BENCH_PPROF= BENCH_JFR= run "$target" select-only 8 >/dev/null
done

results=$work/results
: >"$results"
for script in $SCRIPTS; do
	for c in $CLIENTS; do
		for target in direct pgbouncer go-relay buffered strict; do
			# pgbouncer 1.18 (Debian's) cannot pool protocol-level prepared
			# statements in transaction mode.
			[[ $target == pgbouncer && $script == */prepared ]] && continue
			log "$script, $c clients, $target (${SECONDS_EACH}s)"
			echo "$script $c $target $(run "$target" "$script" "$c")" >>"$results"
		done
	done
done

# The floor of a strict CLIENT frame in this run: one acknowledged produce.
produce=$("$work/benchhelper" produce "$brokers" "$topic" 2000)

# Strict recording alone: as many sessions as clients record select-only
# transactions through the gateway's recorder, with no agent, target or relay
# on the machine. What it reaches bounds a strict gateway at that many clients.
caps=$work/strictcap
: >"$caps"
for c in $CLIENTS; do
	log "strict recording alone, $c sessions (${SECONDS_EACH}s)"
	before=$("$work/benchhelper" cpu "$broker_pid")
	got=$("$work/benchhelper" strictcap "$brokers" "$topic" "$SECONDS_EACH" "$c" 2>/dev/null)
	after=$("$work/benchhelper" cpu "$broker_pid")
	echo "$c $got $((after - before))" >>"$caps"
done

printf '\npgbench, %ss per run, scale %s, plaintext loopback; Kafka %s; 2 cores shared by everything\n' \
	"$SECONDS_EACH" "$SCALE" "$brokers (${BENCH_KAFKA:-private})"
printf 'CPU µs per transaction from /proc: proxy = the gateway or pgbouncer; broker = the Kafka broker; postgres = postmaster and backends\n\n'
awk -v produce="$produce" -v secs="$SECONDS_EACH" -v capfile="$caps" '
	# capfile lines: CLIENTS TPS P50_US RECORDER_US_PER_TXN BROKER_US_TOTAL, in client order.
	BEGIN { while ((getline line < capfile) > 0) { split(line, f, " "); caps[++ncap] = f[1]; cap[f[1]] = f[2] " " f[3] " " f[4] " " f[5] } }
	{ key = $1 " " $2; tps[key, $3] = $4; lat[key, $3] = $5; px[key, $3] = $6; br[key, $3] = $7; pg[key, $3] = $8; fb[key, $3] = $9
	  if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
	function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
	function get(k, t) { return ((k, t) in tps) ? tps[k, t] : 0 } # without creating the entry
	function cpu(k, t) { return ((k, t) in px) ? px[k, t] : "-" }
	END {
		printf "| script | clients | target | TPS | mean latency ms | vs direct | vs pgbouncer | proxy µs/txn | proxy vs pgbouncer | broker µs/txn | postgres µs/txn | frames/batch |\n"
		printf "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
		split("direct pgbouncer go-relay buffered strict", targets, " ")
		for (i = 0; i < n; i++) {
			split(order[i], k, " ")
			for (j = 1; j <= 5; j++) {
				t = targets[j]
				if (!((order[i], t) in tps)) continue
				b = cpu(order[i], "pgbouncer")
				printf "| %s | %s | %s | %.0f | %.3f | %s | %s | %s | %s | %s | %s | %s |\n", k[1], k[2], t, tps[order[i], t], lat[order[i], t],
					ratio(tps[order[i], t], get(order[i], "direct")), ratio(tps[order[i], t], get(order[i], "pgbouncer")),
					px[order[i], t], (t != "pgbouncer" && b != "-" && px[order[i], t] != "-") ? ratio(px[order[i], t], b) : "-",
					br[order[i], t], pg[order[i], t], fb[order[i], t]
			}
		}
		# One client, strict: the latency over direct, in acknowledged produces.
		split(produce, p, " ")
		for (i = 0; i < n; i++) {
			split(order[i], k, " ")
			if (k[2] != 1 || !((order[i], "strict") in tps) || p[1] <= 0) continue
			extra = (lat[order[i], "strict"] - lat[order[i], "direct"]) * 1000
			printf "\n%s, 1 client, strict: %.3f ms = direct %.3f ms + %.0f µs; one acknowledged produce in this run: p50 %d µs (mean %d µs); extra = %.2f produces",
				k[1], lat[order[i], "strict"], lat[order[i], "direct"], extra, p[1], p[2], extra / p[1]
		}
		# Strict recording alone, next to pgbouncer at as many clients.
		for (ci = 1; ci <= ncap; ci++) {
			c = caps[ci]
			split(cap[c], v, " ")
			bp = 0
			for (i = 0; i < n; i++) {
				split(order[i], k, " ")
				if (k[2] == c && ((order[i], "pgbouncer") in tps)) { bp = tps[order[i], "pgbouncer"]; break }
			}
			printf "\nstrict recording alone, %s sessions, no agent or target: %.0f transactions/s (%s× pgbouncer at %s clients), p50 %d µs; recorder %.1f µs/txn, broker %.1f µs/txn",
				c, v[1], ratio(v[1], bp), c, v[2], v[3], v[4] / (v[1] * secs)
		}
		printf "\n"
	}' "$results"
