#!/usr/bin/env bash
# integration/bench/ssh.sh — SSH through tapline against the same sshd directly.
#
#   integration/services.sh up kafka ssh        # once (as root: it runs sshd)
#   integration/bench/ssh.sh                     # BENCH_SCP_MB=1024 by default
#
# Measures, against:
#   direct     the test sshd, logging in with the gateway's own key
#   go-relay   an SSH relay on golang.org/x/crypto/ssh that records nothing
#              (benchhelper sshrelay; AES-GCM to the agent, as the gateway
#              offers OpenSSH): the floor of an SSH edge built on that library
#   go-relay-kafka  the same relay, producing every chunk of channel data it
#              passes to the bench topic as a bare record (no frame, chain,
#              masking), not waited for: the floor of an edge on that library
#              that sends what passes to Kafka
#   strict     a tapline gateway in strict mode (agent data is forwarded only
#              after Kafka acknowledged its frame)
#   buffered   a tapline gateway in buffered mode
# 1. scp of a BENCH_SCP_MB MiB random file to the target and back (OpenSSH's
#    default scp, i.e. the SFTP protocol; checksums compared), MB/s;
# 2. `ssh TARGET true`, BENCH_RTT_N (default 20) times per target, interleaved:
#    mean wall time of a whole connection (handshake, token check, session.start
#    acknowledged, the gateway's login to the target, exec, exit).
# 3. CPU per MiB moved by scp, read from /proc: gateway, Kafka broker, sshd.
# Both gateways record to a private Kafka broker the script starts
# (BENCH_KAFKA=shared: the test services' broker, into a topic deleted at the end).
# BENCH_ROUNDS sets the gateways' kafka.rounds_in_flight (0: no limit of theirs, to compare).
# BENCH_SSH_WARMUP_MB (default 64) goes through each gateway before the rows.
# BENCH_SSH_CIPHERS sets the gateways' ssh.ciphers (flow YAML, e.g.
# "[aes128-gcm@openssh.com, aes128-ctr]": what OpenSSH then picks, to compare).
# BENCH_PPROF=DIR saves a CPU profile of the gateway (BENCH_PPROF_SECONDS, default
# 5, from the start of each scp), BENCH_JFR=DIR a flight recording of the broker
# for each scp through a gateway.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
MB=${BENCH_SCP_MB:-1024}
RTT_N=${BENCH_RTT_N:-20}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka ssh" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME TAPLINE_KAFKA_BROKERS TAPLINE_SSH_PORT TAPLINE_SSH_USER TAPLINE_SSH_KEY TAPLINE_SSH_KNOWN_HOSTS

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench-ssh.XXXXXX")
pids=()
topic=
cleanup() {
	stop_pids
	[[ -n $topic && ${BENCH_KAFKA:-private} == shared ]] && "$work/benchhelper" deltopic "$brokers" "$topic" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

build_tools
start_issuer
start_kafka
printf '%s' "$token" >"$work/token"
printf '#!/bin/sh\nexec cat %q\n' "$work/token" >"$work/askpass"
chmod 700 "$work/askpass"

topic=tapline.bench.ssh.$(date +%s)
create_topic "$brokers" "$topic"
warm_kafka "$topic"

# start_gateway MODE: sets gw_port.
start_gateway() {
	local mode=$1 port metrics
	port=$(free_port)
	metrics=$(free_port)
	cat >"$work/$mode.yaml" <<EOF
gateway_id: bench-ssh-$mode
data_dir: $work/gw-$mode
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: $mode${BENCH_ROUNDS:+, rounds_in_flight: $BENCH_ROUNDS}}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
ssh: {listen: "127.0.0.1:$port"${BENCH_SSH_CIPHERS:+, ciphers: $BENCH_SSH_CIPHERS}}
metrics: {listen: "127.0.0.1:$metrics"${BENCH_PPROF:+, pprof: true}}
targets:
  - name: box
    protocol: ssh
    address: "127.0.0.1:$TAPLINE_SSH_PORT"
    groups: [bench]
    ssh: {user: $TAPLINE_SSH_USER, key_file: $TAPLINE_SSH_KEY, known_hosts: $TAPLINE_SSH_KNOWN_HOSTS}
EOF
	"$tapline" gateway --config "$work/$mode.yaml" --log-level warn >"$work/gateway-$mode.log" 2>&1 &
	pids+=($!)
	gw_pid=$!
	wait_port "$port" "gateway ($mode)"
	echo "[127.0.0.1]:$port $(ssh-keygen -y -f "$work/gw-$mode/ssh_host_ed25519_key")" >>"$work/known_hosts"
	gw_port=$port
	gw_metrics=$metrics
}

log "gateways (strict, buffered)"
start_gateway strict
strict_port=$gw_port strict_pid=$gw_pid strict_metrics=$gw_metrics
start_gateway buffered
buffered_port=$gw_port buffered_pid=$gw_pid buffered_metrics=$gw_metrics
sshd_pid=$(cat "$TAPLINE_SERVICES_DIR/ssh/sshd.pid")

# start_relay NAME [BROKERS TOPIC]: benchhelper sshrelay (producing to TOPIC when
# given) on a free port, its host key added to known_hosts; sets relay_port and
# relay_pid.
start_relay() {
	local name=$1 port
	shift
	port=$(free_port)
	"$work/benchhelper" sshrelay "127.0.0.1:$port" "127.0.0.1:$TAPLINE_SSH_PORT" "$TAPLINE_SSH_USER" \
		"$TAPLINE_SSH_KEY" "$TAPLINE_SSH_KNOWN_HOSTS" "$work/$name.known_hosts" "$@" &
	pids+=($!)
	relay_pid=$!
	wait_port "$port" "$name"
	cat "$work/$name.known_hosts" >>"$work/known_hosts"
	relay_port=$port
}

log "Go SSH relays (recording nothing; sending the bytes to Kafka)"
start_relay go-relay-kafka "$brokers" "$topic"
relayk_port=$relay_port relayk_pid=$relay_pid
start_relay go-relay

# curve25519 everywhere: OpenSSH would pick sntrup761 (slower) against sshd but
# cannot against the gateway, and the gateway's own login to sshd uses curve25519.
common=(-F /dev/null -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o LogLevel=ERROR
	-o KexAlgorithms=curve25519-sha256)
# client TARGET: the options and user@host for TARGET; sets port.
client() {
	case $1 in
	direct)
		port=$TAPLINE_SSH_PORT
		opts=("${common[@]}" -o UserKnownHostsFile="$TAPLINE_SSH_KNOWN_HOSTS" -o IdentitiesOnly=yes -i "$TAPLINE_SSH_KEY")
		dest=$TAPLINE_SSH_USER@127.0.0.1
		;;
	go-relay | go-relay-kafka)
		[[ $1 == go-relay ]] && port=$relay_port || port=$relayk_port
		opts=("${common[@]}" -o UserKnownHostsFile="$work/known_hosts")
		dest=agent@127.0.0.1
		;;
	strict | buffered)
		[[ $1 == strict ]] && port=$strict_port || port=$buffered_port
		opts=("${common[@]}" -o UserKnownHostsFile="$work/known_hosts" -o PubkeyAuthentication=no
			-o PreferredAuthentications=keyboard-interactive,password)
		dest=box@127.0.0.1
		;;
	esac
}
export SSH_ASKPASS=$work/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0

remote=$(mktemp -d /tmp/tapline-bench-target.XXXXXX)
chown "$TAPLINE_SSH_USER" "$remote"
trap 'cleanup; rm -rf "$remote"' EXIT

log "${MB} MiB random file"
head -c "$((MB << 20))" /dev/urandom >"$work/file"
want=$(sha256sum <"$work/file" | cut -d' ' -f1)

# profile TARGET DIRECTION / profiled TARGET DIRECTION: around one scp through a
# gateway, the gateway's CPU profile (BENCH_PPROF) and the broker's flight
# recording (BENCH_JFR).
profile() {
	[[ $1 == direct || $1 == go-relay* ]] && return 0
	local m=${1}_metrics
	jfr_start "scp-$2-$1"
	[[ -n ${BENCH_PPROF:-} ]] || return 0
	mkdir -p "$BENCH_PPROF"
	curl -fsS -o "$BENCH_PPROF/scp-$2-$1.pprof" \
		"http://127.0.0.1:${!m}/debug/pprof/profile?seconds=${BENCH_PPROF_SECONDS:-5}" &
	pprof_pid=$!
}
profiled() {
	[[ $1 == direct || $1 == go-relay* ]] && return 0
	jfr_stop "scp-$2-$1"
	[[ -n ${pprof_pid:-} ]] && wait "$pprof_pid"
	pprof_pid=
	return 0
}

# sessions_gone: waits (up to 5 s) until sshd's session processes exited, so
# that the tracker (benchhelper cputrack: privilege-separated sshd does not
# reap its sessions' processes, so /proc's cutime misses them) sees their end.
sessions_gone() {
	local i
	for ((i = 0; i < 50; i++)); do
		pgrep -P "$sshd_pid" >/dev/null || return 0
		sleep 0.1
	done
}

# scp_run TARGET: prints "up_seconds down_seconds gateway_us broker_us sshd_us", the
# CPU of the whole run (both directions) from /proc.
scp_run() {
	local target=$1 t0 t1 t2 got proxy=- before after
	client "$target"
	[[ $target == strict ]] && proxy=$strict_pid
	[[ $target == buffered ]] && proxy=$buffered_pid
	[[ $target == go-relay ]] && proxy=$relay_pid
	[[ $target == go-relay-kafka ]] && proxy=$relayk_pid
	rm -f "$remote/file" "$work/back"
	drop_caches "$work/file"
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid")
	rm -f "$work/track.stop"
	"$work/benchhelper" cputrack "$sshd_pid" "$work/track.stop" >"$work/track.out" &
	local tracker=$!
	t0=$(now)
	profile "$target" up
	scp -q "${opts[@]}" -P "$port" "$work/file" "$dest:$remote/file"
	profiled "$target" up
	t1=$(now)
	profile "$target" down
	scp -q "${opts[@]}" -P "$port" "$dest:$remote/file" "$work/back"
	profiled "$target" down
	t2=$(now)
	sessions_gone
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid")
	touch "$work/track.stop"
	wait "$tracker"
	after="$after $(cat "$work/track.out")"
	before="$before 0"
	for got in "$remote/file" "$work/back"; do
		[[ $(sha256sum <"$got" | cut -d' ' -f1) == "$want" ]] || {
			echo "bench: $target: $got differs from the original" >&2
			exit 1
		}
	done
	echo "$(calc "$t1 - $t0") $(calc "$t2 - $t1") $(cpu_delta "$before" "$after" "$proxy")"
}

# rtt_once TARGET: prints the seconds of one `ssh TARGET true`.
rtt_once() {
	local t0 t1
	client "$1"
	t0=$(now)
	ssh "${opts[@]}" -p "$port" "$dest" true
	t1=$(now)
	calc "$t1 - $t0"
}

# A warm-up through both gateways first (not measured): a fresh broker's JIT
# compiler otherwise spends a fifth of its CPU during the first measured rows.
log "warm-up: ${BENCH_SSH_WARMUP_MB:-64} MiB up through both gateways (not measured)"
head -c "$((${BENCH_SSH_WARMUP_MB:-64} << 20))" "$work/file" >"$work/warm"
for target in strict buffered; do
	client "$target"
	scp -q "${opts[@]}" -P "$port" "$work/warm" "$dest:$remote/warm"
done
rm -f "$work/warm" "$remote/warm"

results=$work/results
: >"$results"
for target in direct go-relay go-relay-kafka strict buffered; do
	log "scp ${MB} MiB up and down, $target"
	echo "scp $target $(scp_run "$target")" >>"$results"
done
# Round trips interleaved, so that load from elsewhere on the machine hits all
# targets alike; one warm-up round first (page cache, the issuer's keys).
log "ssh true x$RTT_N per target, interleaved"
for ((i = 0; i <= RTT_N; i++)); do
	for target in direct go-relay go-relay-kafka strict buffered; do
		t=$(rtt_once "$target")
		((i == 0)) || echo "rtt $target $t" >>"$results"
	done
done

printf '\nSSH: scp %s MiB (SFTP protocol) each way, `ssh box true` x%s; loopback; Kafka %s; 2 cores shared by everything\n\n' \
	"$MB" "$RTT_N" "$brokers (${BENCH_KAFKA:-private})"
printf 'CPU µs per MiB moved (up and down together), from /proc: gateway, Kafka broker, sshd (with its session processes)\n\n'
awk -v mb="$MB" '
	$1 == "scp" { up[$2] = $3; down[$2] = $4; gw[$2] = $5; br[$2] = $6; sd[$2] = $7 }
	$1 == "rtt" { rtt[$2] += $3; n[$2]++ }
	function rate(s) { return s > 0 ? mb / s : 0 }
	END {
		printf "| target | scp up MiB/s | vs direct | scp down MiB/s | vs direct | ssh true mean ms | vs direct | gateway (or relay) µs/MiB | broker µs/MiB | sshd µs/MiB |\n"
		printf "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
		nt = split("direct go-relay go-relay-kafka strict buffered", ts, " ")
		for (i = 1; i <= nt; i++) {
			t = ts[i]
			rtt[t] /= n[t]
			printf "| %s | %.1f | %.2f | %.1f | %.2f | %.1f | %.2f | %s | %.0f | %.0f |\n", t,
				rate(up[t]), rate(up[t]) / rate(up["direct"]), rate(down[t]), rate(down[t]) / rate(down["direct"]),
				rtt[t] * 1000, rtt[t] / rtt["direct"], gw[t] == "-" ? "-" : sprintf("%.0f", gw[t] / (2 * mb)), br[t] / (2 * mb), sd[t] / (2 * mb)
		}
	}' "$results"
