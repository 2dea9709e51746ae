#!/usr/bin/env bash
# integration/services.sh — install, start and stop the real services that the
# integration tests use (no Docker): Kafka, PostgreSQL (+ pgbouncer on demand),
# OpenSSH, ClickHouse server, the chDB library, the SIEM consumers (Kafka
# Connect, rsyslog imkafka, kcat, an OCSF validator), and nginx with the Python
# HTTP clients for the HTTP edge, and a Kubernetes API server (etcd,
# kube-apiserver, kwok as the node, kubectl) for the Kubernetes edge. See
# docs/services.md.
#
#   services.sh up [SERVICE...]      install what is missing, start (or reuse) services,
#                                    write .services/env; SERVICE: kafka postgres ssh clickhouse chdb siem http browser hydra kubernetes
#   services.sh down [SERVICE...]    stop what `up` started
#   services.sh status               what runs where, and its log
#   services.sh env [--export]       print .services/env
#   services.sh kafka-instance start DIR [PORT [CONTROLLER_PORT]] | stop DIR | run DIR PORT CONTROLLER_PORT
#                                    a private Kafka broker (tests that stop/restart a broker)
#   services.sh pgbouncer start [POOL_MODE] | stop | status
#                                    pgbouncer in front of the test Postgres (benchmarks)
#   services.sh up|down kafka-cluster  three-broker Kafka (RF=3, min.insync.replicas=2) for
#                                    make chaos; never started by a bare `up`
#   services.sh kafka-cluster-node start|stop N
#                                    restart one node of that cluster with its ports and data
#
# State, data and logs live in $REPO/.services (gitignored); downloads are
# cached in ${XDG_CACHE_HOME:-$HOME/.cache}/tapline so that another clone on the
# same machine reuses them.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STATE=${TAPLINE_SERVICES_DIR:-$REPO/.services}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tapline
ENV_FILE=$STATE/env
ALL_SERVICES=(kafka postgres ssh clickhouse chdb siem http browser hydra kubernetes)
# Services started only when named (`up kafka-cluster`); their env parts are kept.
OPT_SERVICES=(kafka-cluster)

mkdir -p "$STATE/parts" "$CACHE"
PORTS_TAKEN=$(mktemp "${TMPDIR:-/tmp}/tapline-ports.XXXXXX")
trap 'rm -f "$PORTS_TAKEN" "$PORTS_TAKEN.lock"' EXIT

# shellcheck source=scripts/common.sh
source "$SCRIPT_DIR/scripts/common.sh"
# shellcheck source=scripts/kafka.sh
source "$SCRIPT_DIR/scripts/kafka.sh"
# shellcheck source=scripts/postgres.sh
source "$SCRIPT_DIR/scripts/postgres.sh"
# shellcheck source=scripts/ssh.sh
source "$SCRIPT_DIR/scripts/ssh.sh"
# shellcheck source=scripts/clickhouse.sh
source "$SCRIPT_DIR/scripts/clickhouse.sh"
# shellcheck source=scripts/chdb.sh
source "$SCRIPT_DIR/scripts/chdb.sh"
# shellcheck source=scripts/siem.sh
source "$SCRIPT_DIR/scripts/siem.sh"
# shellcheck source=scripts/http.sh
source "$SCRIPT_DIR/scripts/http.sh"
# shellcheck source=scripts/browser.sh
source "$SCRIPT_DIR/scripts/browser.sh"
# shellcheck source=scripts/hydra.sh
source "$SCRIPT_DIR/scripts/hydra.sh"
# shellcheck source=scripts/kubernetes.sh
source "$SCRIPT_DIR/scripts/kubernetes.sh"
# shellcheck source=scripts/kafka-cluster.sh
source "$SCRIPT_DIR/scripts/kafka-cluster.sh"

# prefix SERVICE: the shell-function prefix of a service.
prefix() {
	case $1 in
	kafka) echo kafka ;;
	postgres) echo pg ;;
	ssh) echo ssh ;;
	clickhouse) echo ch ;;
	chdb) echo chdb ;;
	siem) echo siem ;;
	http) echo http ;;
	browser) echo browser ;;
	hydra) echo hydra ;;
	kubernetes) echo kube ;;
	kafka-cluster) echo kcluster ;;
	*) die "unknown service '$1' (known: ${ALL_SERVICES[*]})" ;;
	esac
}

need_root() {
	[[ $(id -u) == 0 ]] || die "services.sh $1 must run as root (it installs packages, creates users, runs sshd)"
}

lock() {
	exec 9>"$STATE/.services.lock"
	flock -w 600 9 || die "another services.sh holds $STATE/.services.lock"
}

# write_env: .services/env is the concatenation of the parts of the services
# that are up, written atomically.
write_env() {
	local tmp=$ENV_FILE.tmp.$$ f
	{
		echo "# Written by integration/services.sh $(date -Is). Endpoints of the test services."
		env_line TAPLINE_SERVICES_DIR "$STATE"
		env_line TAPLINE_SERVICES_SCRIPT "$SCRIPT_DIR/services.sh"
		for f in "${ALL_SERVICES[@]}" "${OPT_SERVICES[@]}"; do
			[[ -f $STATE/parts/$f.env ]] && cat "$STATE/parts/$f.env"
		done
	} >"$tmp"
	mv "$tmp" "$ENV_FILE"
}

cmd_up() {
	need_root up
	lock
	local services=("$@") s t0 pkgs=()
	((${#services[@]})) || services=("${ALL_SERVICES[@]}")
	for s in "${services[@]}"; do prefix "$s" >/dev/null; done
	t0=$(now_ms)

	for s in "${services[@]}"; do
		mapfile -t -O "${#pkgs[@]}" pkgs < <("$(prefix "$s")_packages")
	done
	((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"

	# Start the services side by side; each one's progress lines carry its name.
	local pids=() failed=()
	for s in "${services[@]}"; do
		rm -f "$STATE/parts/$s.env"
		("$(prefix "$s")_up") 2> >(sed -u "s/^/[$s] /" >&2) &
		pids+=($!)
	done
	local i
	for i in "${!services[@]}"; do
		wait "${pids[$i]}" || failed+=("${services[$i]}")
	done
	sleep 0.1 # let the prefixing sed flush
	write_env
	if ((${#failed[@]})); then
		printf 'services: FAILED: %s (messages above name the log to read). Endpoints of the others are in %s\n' \
			"${failed[*]}" "$ENV_FILE" >&2
		exit 1
	fi
	log "services up in $((($(now_ms) - t0) / 1000)).$(((($(now_ms) - t0) % 1000) / 100))s; endpoints in $ENV_FILE"
}

cmd_down() {
	need_root down
	lock
	local services=("$@") s
	((${#services[@]})) || services=("${ALL_SERVICES[@]}")
	for s in "${services[@]}"; do
		"$(prefix "$s")_down"
		rm -f "$STATE/parts/$s.env"
	done
	if compgen -G "$STATE/parts/*.env" >/dev/null; then
		write_env
	else
		rm -f "$ENV_FILE"
	fi
	log "stopped: ${services[*]}"
}

cmd_status() {
	local s
	for s in "${ALL_SERVICES[@]}"; do "$(prefix "$s")_status"; done
	kcluster_status
	pgbouncer_cmd status
	if [[ -f $ENV_FILE ]]; then echo "env file: $ENV_FILE"; else echo "env file: none (run: make services-up)"; fi
}

cmd_env() {
	[[ -f $ENV_FILE ]] || die "no $ENV_FILE; run: make services-up"
	if [[ ${1:-} == --export ]]; then
		grep -v '^#' "$ENV_FILE" | sed 's/^/export /'
	else
		cat "$ENV_FILE"
	fi
}

main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status ;;
	env) cmd_env "$@" ;;
	kafka-instance) kafka_instance_cmd "$@" ;;
	pgbouncer) pgbouncer_cmd "$@" ;;
	kafka-cluster-node) kcluster_node_cmd "$@" ;;
	*)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
}

main "$@"
