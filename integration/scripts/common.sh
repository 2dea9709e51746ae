# shellcheck shell=bash
# Helpers shared by integration/services.sh and the per-service scripts beside
# this file. Sourced, never run. Expects REPO, STATE and CACHE to be set.

log() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
	printf 'services: ERROR: %s\n' "$*" >&2
	exit 1
}

# now_ms prints a monotonic-enough wall clock in milliseconds.
now_ms() { date +%s%3N; }

# port_listening PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_listening() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port [PREFERRED]: print a free loopback port. PREFERRED (the port used
# last time) is kept when it is free so that endpoints stay stable across
# restarts. Ports handed out during this run are remembered in
# $STATE/.ports-taken so that two services started in one `up` never collide.
# Ports come from 15000-32767, below Linux's default ephemeral range, so a
# client socket cannot take them in between.
pick_port() {
	(
		flock 8
		pick_port_locked "$@"
	) 8>"${PORTS_TAKEN:?}.lock"
}

pick_port_locked() {
	local want=${1:-} p i taken=${PORTS_TAKEN:?}
	if [[ -n $want ]] && ! grep -qx "$want" "$taken" && ! port_listening "$want"; then
		echo "$want" >>"$taken"
		echo "$want"
		return
	fi
	for ((i = 0; i < 500; i++)); do
		p=$((15000 + (RANDOM * 32768 + RANDOM) % 17768))
		if ! grep -qx "$p" "$taken" && ! port_listening "$p"; then
			echo "$p" >>"$taken"
			echo "$p"
			return
		fi
	done
	die "no free loopback port found in 15000-32767"
}

# close_fds: close every descriptor above 2 in this shell, so that a daemon
# started from it holds neither the state lock nor the pipes of `up`.
close_fds() {
	local fd
	for fd in "/proc/$BASHPID/fd"/*; do
		fd=${fd##*/}
		((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
	done
	return 0
}

# run_detached CMD...: run CMD (which daemonizes itself) without our fds.
run_detached() {
	(
		close_fds
		exec "$@"
	)
}

# daemonize LOG PIDFILE CMD...: start CMD in its own session, output appended
# to LOG; its pid goes to PIDFILE.
daemonize() {
	local logf=$1 pidf=$2
	shift 2
	(
		close_fds
		exec setsid "$@" >>"$logf" 2>&1 </dev/null
	) &
	echo $! >"$pidf"
}

# pid_alive PIDFILE: true if PIDFILE names a running process whose command
# line mentions PIDFILE's directory (every daemon here is started with a config
# file beside its pid file), so that a pid recycled after a reboot or a kill
# is not taken for our service.
pid_alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(head -n1 "$1" | tr -dc '0-9')
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(dirname "$1")/"
}

pid_of() { head -n1 "$1" | tr -dc '0-9'; }

# pid_running PIDFILE: true while the process PIDFILE names exists and has
# not exited. wait_until uses it rather than pid_alive: right after daemonize
# the child may still be the subshell closing descriptors, whose command line
# does not yet name the daemon's directory.
pid_running() {
	local pid state
	[[ -s $1 ]] || return 1
	pid=$(pid_of "$1")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
	[[ $state != Z && $state != X ]]
}

# stop_pidfile NAME PIDFILE [TIMEOUT_S]: SIGTERM the process, wait, then SIGKILL.
stop_pidfile() {
	local name=$1 pf=$2 timeout=${3:-30} pid i
	if ! pid_alive "$pf"; then
		rm -f "$pf"
		return 0
	fi
	pid=$(pid_of "$pf")
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		note "$name did not stop within ${timeout}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$pf"
}

# wait_until TIMEOUT_S WHAT LOGFILE PIDFILE CMD...: poll CMD until it succeeds.
# Gives up at once if PIDFILE (unless "-") no longer names a live process. On
# failure, exit with a message naming the log to read and its last lines.
wait_until() {
	local timeout=$1 what=$2 logfile=$3 pidfile=$4
	shift 4
	local deadline=$((SECONDS + timeout)) why="not ready after ${timeout}s"
	while ! "$@" >/dev/null 2>&1; do
		if [[ $pidfile != - ]] && ! pid_running "$pidfile"; then
			why="exited while starting"
			break
		fi
		if ((SECONDS >= deadline)); then
			break
		fi
		sleep 0.1
	done
	"$@" >/dev/null 2>&1 && return 0
	printf 'services: ERROR: %s %s.\n' "$what" "$why" >&2
	printf 'services: look at %s; its last lines:\n' "$logfile" >&2
	tail -n 25 "$logfile" 2>/dev/null | sed 's/^/    | /' >&2 || true
	exit 1
}

# env_line KEY VALUE: one line of the env file; values with characters a shell
# would split on are single-quoted (testenv strips the quotes).
env_line() {
	local k=$1 v=$2
	if [[ $v =~ ^[A-Za-z0-9_./:@,+=%-]*$ ]]; then
		printf '%s=%s\n' "$k" "$v"
	else
		printf "%s='%s'\n" "$k" "${v//\'/\'\\\'\'}"
	fi
}

# env_get FILE KEY: the value of KEY in an env file written by env_line.
env_get() {
	local v
	[[ -f $1 ]] || return 0
	v=$(sed -n "s/^$2=//p" "$1" | tail -n1)
	v=${v#\'}
	v=${v%\'}
	printf '%s' "$v"
}

# secret NAME: a random password made on first use and kept in $STATE/secrets.
secret() {
	local f=$STATE/secrets v
	touch "$f"
	chmod 600 "$f"
	v=$(env_get "$f" "$1")
	if [[ -z $v ]]; then
		v=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
		echo "$1=$v" >>"$f"
	fi
	printf '%s' "$v"
}

# ---- packages --------------------------------------------------------------

APT_UPDATED=${APT_UPDATED:-}

# apt_install PKG...: install the Debian packages that are not installed yet.
# Runs `apt-get update` at most once per run. Services are never started by
# the packages themselves (policy-rc.d denies it while we install).
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]}"
	local t0
	t0=$(now_ms)
	if [[ -z $APT_UPDATED ]]; then
		log "apt-get update"
		apt-get update -qq >"$STATE/apt.log" 2>&1 || die "apt-get update failed; see $STATE/apt.log"
		APT_UPDATED=1
	fi
	log "apt-get install ${missing[*]}"
	local made_policy=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1 || rc=$?
	[[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc); see $STATE/apt.log"
	note "installed in $((($(now_ms) - t0) / 1000))s"
}
