# shellcheck shell=bash disable=SC2154,SC2034
# (work, pids and repo come from the sourcing script; tapline, issuer_url and token
# are set here for it.)
# Shared by the benchmark scripts (sourced, not run). Expects `repo` set and the
# caller's `work` directory and `pids` array created before it starts anything.

log() { printf '== %s\n' "$*" >&2; }

# free_port: a free loopback port (bound and released by the kernel's choice).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
	local port=$1 what=$2 i
	for ((i = 0; i < 200; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: $what not listening on $port; see $work" >&2
	exit 1
}

# load_env "SERVICES..." VAR...: the test services' endpoints, or a hint to start them.
load_env() {
	local services=$1 v
	shift
	env_file=${TAPLINE_SERVICES_ENV:-$repo/.services/env}
	[[ -f $env_file ]] || {
		echo "bench: no $env_file; run integration/services.sh up $services" >&2
		exit 1
	}
	# Not exported: a gateway reads TAPLINE_* variables as overrides of its
	# configuration (TAPLINE_KAFKA_BROKERS would send it to the shared broker).
	# Scripts pass what a child needs explicitly.
	# shellcheck disable=SC1090
	source "$env_file"
	for v in "$@"; do
		[[ -n ${!v:-} ]] || {
			echo "bench: $v missing from $env_file; run integration/services.sh up $services" >&2
			exit 1
		}
	done
}

# stop_pids: end what the script started in the background.
stop_pids() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

# build_tools: sets tapline (TAPLINE_BIN, or built fresh from the working tree so a
# stale bin/tapline cannot be measured by mistake) and builds the bench helper.
build_tools() {
	tapline=${TAPLINE_BIN:-}
	if [[ -z $tapline ]]; then
		log "building tapline"
		tapline=$work/tapline
		go build -o "$tapline" ./cmd/tapline
	fi
	go build -o "$work/benchhelper" ./integration/bench/benchhelper
}

# start_issuer: the dev OIDC issuer; sets issuer_url and a 6-hour token for group bench.
start_issuer() {
	log "dev OIDC issuer"
	"$work/benchhelper" issuer "$work/issuer" >"$work/issuer.log" 2>&1 &
	pids+=($!)
	local i
	for ((i = 0; i < 300; i++)); do # the first line is the URL, once it serves
		issuer_url=$(head -n1 "$work/issuer.log" 2>/dev/null || true) # not created yet: try again
		[[ $issuer_url == http* ]] && break
		sleep 0.1
	done
	wait_port "${issuer_url##*:}" issuer
	token=$("$tapline" token --data-dir "$work/issuer" --sub bench --groups bench --ttl 6h)
}

# start_kafka: a private broker for this script (services.sh kafka-instance run,
# the same jars and settings as the test services' broker), so that the broker's
# CPU figures are this benchmark's alone; sets brokers and broker_pid.
# BENCH_KAFKA=shared uses the test services' broker instead: its CPU then
# includes whatever else uses it.
start_kafka() {
	if [[ ${BENCH_KAFKA:-private} == shared ]]; then
		brokers=$TAPLINE_KAFKA_BROKERS
		broker_pid=$(cat "$TAPLINE_SERVICES_DIR/kafka/pid")
		return
	fi
	local port cport i
	port=$(free_port)
	cport=$(free_port)
	log "private Kafka broker on 127.0.0.1:$port"
	TAPLINE_KAFKA_RUNTIME=$TAPLINE_KAFKA_RUNTIME bash "$TAPLINE_SERVICES_SCRIPT" kafka-instance run "$work/kafka" "$port" "$cport" >"$work/kafka.out" 2>&1 &
	broker_pid=$! # the script execs java in its place
	pids+=($!)
	brokers=127.0.0.1:$port
	for ((i = 0; i < 180; i++)); do
		"$work/benchhelper" topic "$brokers" tapline.bench.ready >/dev/null 2>&1 && return 0
		kill -0 "$broker_pid" 2>/dev/null || break
		sleep 0.5
	done
	echo "bench: private Kafka did not start; see $work/kafka/kafka.log" >&2
	tail -n 20 "$work/kafka/kafka.log" >&2 || true
	exit 1
}

# drop_caches FILE...: with BENCH_DROP_CACHES=1 (the default when this runs as
# root), writes dirty pages and drops the page cache, then reads FILE... back in.
# On the development VM the cost of writing into the page cache grew several
# times as the cache filled (a broker's copy into it went from ~1 to ~8 ms of CPU
# per MiB): rows that write gigabytes would otherwise tax the rows after them.
drop_caches() {
	[[ ${BENCH_DROP_CACHES:-$([[ -w /proc/sys/vm/drop_caches ]] && echo 1)} == 1 ]] || return 0
	sync
	# Writable is not always allowed (a container's /proc/sys): then it stays.
	{ echo 1 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
	(($# == 0)) || cat "$@" >/dev/null
}

# cpu_delta BEFORE AFTER [PROXY]: the CPU µs each process used between two
# samples of `benchhelper cpu` over the same pids, space-separated; the first is
# "-" when PROXY is "-" (a row without a proxy, whose first pid is a stand-in).
cpu_delta() {
	awk -v b="$1" -v a="$2" -v p="${3:-}" 'BEGIN {
		n = split(b, x, " "); split(a, y, " ")
		for (i = 1; i <= n; i++) {
			v = (i == 1 && p == "-") ? "-" : sprintf("%d", y[i] - x[i])
			printf "%s%s", (i > 1 ? " " : ""), v
		}
	}'
}

# jfr_start NAME / jfr_stop NAME: with BENCH_JFR=DIR, a Java Flight Recorder
# recording of the broker between the two calls, saved as DIR/NAME.jfr (read it
# with `jfr print --json --events jdk.ExecutionSample FILE`). The settings are
# the JDK's "profile" with Java methods sampled every millisecond instead of
# every 10 ms: a 10 s row gave a few dozen samples.
jfr_start() {
	[[ -n ${BENCH_JFR:-} ]] || return 0
	local f=$work/sampling.jfc jdk
	if [[ ! -f $f ]]; then
		jdk=$(dirname "$(dirname "$(readlink -f "$(command -v jcmd)")")")
		sed 's#<setting name="period" control="method-sampling-java-interval">[^<]*<#<setting name="period" control="method-sampling-java-interval">1 ms<#' \
			"$jdk/lib/jfr/profile.jfc" >"$f"
	fi
	jcmd "$broker_pid" JFR.start name="$1" settings="$f" >/dev/null
}
jfr_stop() {
	[[ -n ${BENCH_JFR:-} ]] || return 0
	mkdir -p "$BENCH_JFR"
	jcmd "$broker_pid" JFR.stop name="$1" filename="$(realpath "$BENCH_JFR")/$1.jfr" >/dev/null
}

# warm_kafka TOPIC: warms the broker before any row. A fresh JVM compiles its hot
# paths during the first tens of thousands of requests (BENCH_WARM_PRODUCES small
# produces to TOPIC) and, for large records, over the first GiBs (BENCH_WARM_MB
# of a gateway stream's shape to a topic deleted afterwards): on a new broker 64
# MiB of exec-sized records first cost 12.5 ms of CPU per MiB, 1–2 ms after 1.5
# GiB and 0.6–1.2 ms after 3 GiB, where the long-running test broker is (~1 ms).
# Without it the large-stream rows measured the warm-up. The shared broker is
# only given the small produces.
warm_kafka() {
	local mb=${BENCH_WARM_MB:-4096}
	[[ ${BENCH_KAFKA:-private} == shared ]] && mb=0
	log "warming the broker (${BENCH_WARM_PRODUCES:-20000} produces, $mb MiB of large records)"
	"$work/benchhelper" produce "$brokers" "$1" "${BENCH_WARM_PRODUCES:-20000}" >/dev/null
	((mb > 0)) || return 0
	create_topic "$brokers" tapline.bench.warm
	"$work/benchhelper" warm "$brokers" tapline.bench.warm "$mb" "$broker_pid"
	"$work/benchhelper" deltopic "$brokers" tapline.bench.warm
	drop_caches
}

# create_topic BROKERS TOPIC: creates TOPIC and waits until it takes a record:
# a new topic's leader can take a moment, and a gateway refuses sessions until then.
create_topic() {
	local i
	"$work/benchhelper" topic "$1" "$2"
	for ((i = 0; i < 60; i++)); do
		"$work/benchhelper" produce "$1" "$2" 1 >/dev/null 2>&1 && return 0
		sleep 1
	done
	echo "bench: topic $2 on $1 takes no records" >&2
	exit 1
}
