# shellcheck shell=bash
# PostgreSQL 15 (Debian's packages) for the integration tests: own cluster,
# own loopback port, run as the `postgres` system user (it refuses root).
# Sourced by integration/services.sh.

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_USER=postgres # the OS user the server runs as
PG_ADMIN=tapline_admin
PG_GW=tapline_gw
PG_MD5=tapline_md5
PG_DB=app

pg_packages() {
	[[ -x $PG_BIN/postgres && -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] || echo postgresql-$PG_MAJOR
	[[ -x $PG_BIN/psql ]] || echo postgresql-client-$PG_MAJOR
	dpkg-query -W -f='${Status}' postgresql-client 2>/dev/null | grep -q 'install ok installed' || echo postgresql-client
	command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || echo pgbouncer
	command -v openssl >/dev/null || echo openssl
}

# pg_root: where the cluster lives. $STATE/postgres, unless the postgres user
# cannot reach $STATE (a checkout under a private directory); then a directory
# of its own under /var/lib/tapline-services, linked from $STATE/postgres.
pg_root() {
	if runuser -u "$PG_USER" -- test -x "$STATE" 2>/dev/null; then
		if [[ -L $STATE/postgres ]]; then
			readlink -f "$STATE/postgres"
		else
			echo "$STATE/postgres"
		fi
	else
		local h
		h=$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
		echo "/var/lib/tapline-services/$h"
	fi
}

pg_as() { runuser -u "$PG_USER" -- "$@"; }

pg_setup_dirs() {
	PGROOT=$(pg_root)
	PGDATA_DIR=$PGROOT/data
	PG_LOG=$PGROOT/log/postgresql.log
	if [[ $PGROOT != "$STATE/postgres" && ! -e $STATE/postgres ]]; then
		note "the postgres user cannot reach $STATE; cluster lives in $PGROOT"
		mkdir -p "$PGROOT"
		ln -s "$PGROOT" "$STATE/postgres"
	fi
	mkdir -p "$PGROOT"/{log,run,ssl}
	chown "$PG_USER:" "$PGROOT" "$PGROOT"/{log,run,ssl}
	chmod 755 "$PGROOT"
	chmod 700 "$PGROOT/run" "$PGROOT/ssl"
}

# pg_ssl: a self-signed certificate for 127.0.0.1/localhost (made once).
pg_ssl() {
	[[ -f $PGROOT/ssl/server.crt && -f $PGROOT/ssl/server.key ]] && return 0
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
		-subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$PGROOT/ssl/server.key" -out "$PGROOT/ssl/server.crt" >"$PGROOT/ssl/openssl.log" 2>&1 ||
		die "openssl could not make the Postgres certificate; see $PGROOT/ssl/openssl.log"
	chown "$PG_USER:" "$PGROOT/ssl/server.key" "$PGROOT/ssl/server.crt"
	chmod 600 "$PGROOT/ssl/server.key"
	chmod 644 "$PGROOT/ssl/server.crt"
	# A copy anyone (tests, clients) can read as the CA for verify-full.
	cp "$PGROOT/ssl/server.crt" "$STATE/postgres-server.crt"
	chmod 644 "$STATE/postgres-server.crt"
}

pg_initdb() {
	[[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
	log "initdb $PGDATA_DIR"
	local pw=$PGROOT/.pwfile
	secret PG_ADMIN_PASSWORD >"$pw"
	chown "$PG_USER:" "$pw"
	chmod 600 "$pw"
	pg_as "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$PG_ADMIN" --pwfile="$pw" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync \
		>"$PGROOT/log/initdb.log" 2>&1 || die "initdb failed; see $PGROOT/log/initdb.log"
	rm -f "$pw"
	echo "include 'tapline.conf'" >>"$PGDATA_DIR/postgresql.conf"
}

pg_write_config() {
	local port=$1
	cat >"$PGDATA_DIR/tapline.conf" <<EOF
# Written by tapline integration/scripts/postgres.sh; rewritten at every start.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PGROOT/run'
unix_socket_permissions = 0700
max_connections = 200
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$PGROOT/ssl/server.crt'
ssl_key_file = '$PGROOT/ssl/server.key'
# Tests read the log to prove what did (or did not) reach the server.
log_statement = 'all'
log_connections = on
log_disconnections = on
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
# A throwaway test cluster: durability is not wanted, speed is.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	cat >"$PGDATA_DIR/pg_hba.conf" <<EOF
# Written by tapline integration/scripts/postgres.sh; rewritten at every start.
# TYPE  DATABASE  USER          ADDRESS        METHOD
local   all       all                          trust
host    all       $PG_MD5   127.0.0.1/32   md5
host    all       $PG_GW    127.0.0.1/32   scram-sha-256
host    all       all           127.0.0.1/32   scram-sha-256
host    all       all           ::1/128        scram-sha-256
EOF
	chown "$PG_USER:" "$PGDATA_DIR/tapline.conf" "$PGDATA_DIR/pg_hba.conf"
}

pg_running() {
	pg_as "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1; }

# pg_roles: create or update the roles and the database (every `up`; cheap).
pg_roles() {
	local port=$1
	PGPASSWORD='' "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGROOT/run" -p "$port" -U "$PG_ADMIN" -d postgres \
		-v admin_pw="$(secret PG_ADMIN_PASSWORD)" -v gw_pw="$(secret PG_GW_PASSWORD)" -v md5_pw="$(secret PG_MD5_PASSWORD)" \
		>"$PGROOT/log/roles.log" 2>&1 <<EOF || die "could not set up Postgres roles; see $PGROOT/log/roles.log and $PG_LOG"
SET log_statement = 'none';
SELECT 'CREATE ROLE $PG_GW LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_GW') \gexec
SELECT 'CREATE ROLE $PG_MD5 LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_MD5') \gexec
SET password_encryption = 'scram-sha-256';
ALTER ROLE $PG_ADMIN PASSWORD :'admin_pw';
ALTER ROLE $PG_GW LOGIN PASSWORD :'gw_pw';
SET password_encryption = 'md5';
ALTER ROLE $PG_MD5 LOGIN PASSWORD :'md5_pw';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_GW' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
\c $PG_DB
SET log_statement = 'none';
GRANT USAGE, CREATE ON SCHEMA public TO $PG_MD5;
EOF
}

pg_up() {
	pg_setup_dirs
	pg_initdb
	pg_ssl
	local port old
	old=$(cat "$PGROOT/port" 2>/dev/null || true)
	if pg_running && [[ -n $old ]] && pg_ready "$old"; then
		port=$old
		note "postgres already running on 127.0.0.1:$port"
	else
		if pg_running; then pg_as "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast >/dev/null 2>&1 || true; fi
		port=$(pick_port "$old")
		echo "$port" >"$PGROOT/port"
		pg_write_config "$port"
		log "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$port"
		# A fresh log per start (the previous one is kept as .1): with
		# log_statement=all it grows by hundreds of MB an hour under load.
		[[ -f $PG_LOG ]] && mv -f "$PG_LOG" "$PG_LOG.1"
		echo "---- start $(date -Is) port $port" | pg_as tee -a "$PG_LOG" >/dev/null
		run_detached runuser -u "$PG_USER" -- "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 >"$PGROOT/log/pg_ctl.log" 2>&1 || {
			printf 'services: ERROR: PostgreSQL did not start within 60s.\nservices: look at %s and %s; last lines:\n' "$PG_LOG" "$PGROOT/log/pg_ctl.log" >&2
			tail -n 20 "$PG_LOG" | sed 's/^/    | /' >&2
			exit 1
		}
		wait_until 30 "PostgreSQL on 127.0.0.1:$port" "$PG_LOG" - pg_ready "$port"
	fi
	pg_roles "$port"
	{
		env_line TAPLINE_PG_HOST 127.0.0.1
		env_line TAPLINE_PG_PORT "$port"
		env_line TAPLINE_PG_ADMIN_USER "$PG_ADMIN"
		env_line TAPLINE_PG_ADMIN_PASSWORD "$(secret PG_ADMIN_PASSWORD)"
		env_line TAPLINE_PG_GW_USER "$PG_GW"
		env_line TAPLINE_PG_GW_PASSWORD "$(secret PG_GW_PASSWORD)"
		env_line TAPLINE_PG_MD5_USER "$PG_MD5"
		env_line TAPLINE_PG_MD5_PASSWORD "$(secret PG_MD5_PASSWORD)"
		env_line TAPLINE_PG_DB "$PG_DB"
		env_line TAPLINE_PG_BIN "$PG_BIN"
		env_line TAPLINE_PG_LOG "$PG_LOG"
		env_line TAPLINE_PG_SSL_CERT "$STATE/postgres-server.crt"
		env_line TAPLINE_PG_SOCKET_DIR "$PGROOT/run"
		env_line TAPLINE_PGBOUNCER_BIN "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
	} >"$STATE/parts/postgres.env"
}

pg_down() {
	pgbouncer_cmd stop
	PGROOT=$(pg_root)
	PGDATA_DIR=$PGROOT/data
	[[ -f $PGDATA_DIR/PG_VERSION ]] || return 0
	if pg_running; then
		log "stopping postgres"
		pg_as "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 >/dev/null 2>&1 ||
			note "pg_ctl stop failed; see $PGROOT/log/postgresql.log"
	fi
}

pg_status() {
	PGROOT=$(pg_root)
	PGDATA_DIR=$PGROOT/data
	if [[ -f $PGDATA_DIR/PG_VERSION ]] && pg_running; then
		echo "postgres: running, 127.0.0.1:$(cat "$PGROOT/port"), log $PGROOT/log/postgresql.log"
	else
		echo "postgres: stopped"
	fi
}

# `services.sh pgbouncer start [session|transaction|statement]` / `stop` / `status`:
# a pgbouncer in front of the test Postgres, for benchmarks. Not started by
# `up`. `start` prints KEY=VALUE lines (also left in .services/pgbouncer.env).
pgbouncer_cmd() {
	local sub=${1:-status} mode=${2:-transaction}
	PGROOT=$(pg_root)
	local dir=$PGROOT/pgbouncer bin
	bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
	case $sub in
	start)
		[[ -x $bin ]] || die "pgbouncer is not installed; run: make services-up"
		local pgport
		pgport=$(cat "$PGROOT/port" 2>/dev/null) || die "postgres is not set up; run: make services-up"
		pg_ready "$pgport" || die "postgres is not running; run: make services-up"
		if pid_alive "$dir/pgbouncer.pid"; then
			note "pgbouncer already running on 127.0.0.1:$(cat "$dir/port")"
		else
			mkdir -p "$dir"
			chown "$PG_USER:" "$dir"
			local port
			port=$(pick_port "$(cat "$dir/port" 2>/dev/null || true)")
			echo "$port" >"$dir/port"
			cat >"$dir/pgbouncer.ini" <<EOF
; Written by tapline integration/scripts/postgres.sh.
[databases]
* = host=127.0.0.1 port=$pgport

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
admin_users = $PG_ADMIN
stats_users = $PG_ADMIN
pool_mode = $mode
max_client_conn = 1000
default_pool_size = 50
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
			{
				printf '"%s" "%s"\n' "$PG_ADMIN" "$(secret PG_ADMIN_PASSWORD)"
				printf '"%s" "%s"\n' "$PG_GW" "$(secret PG_GW_PASSWORD)"
				printf '"%s" "%s"\n' "$PG_MD5" "$(secret PG_MD5_PASSWORD)"
			} >"$dir/userlist.txt"
			chown "$PG_USER:" "$dir/pgbouncer.ini" "$dir/userlist.txt"
			chmod 600 "$dir/userlist.txt"
			log "starting pgbouncer ($mode pooling) on 127.0.0.1:$port"
			run_detached runuser -u "$PG_USER" -- "$bin" -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 ||
				die "pgbouncer did not start; see $dir/start.log and $dir/pgbouncer.log"
			wait_until 20 "pgbouncer on 127.0.0.1:$port" "$dir/pgbouncer.log" - port_listening "$port"
		fi
		{
			env_line TAPLINE_PGBOUNCER_ADDR "127.0.0.1:$(cat "$dir/port")"
			env_line TAPLINE_PGBOUNCER_HOST 127.0.0.1
			env_line TAPLINE_PGBOUNCER_PORT "$(cat "$dir/port")"
			env_line TAPLINE_PGBOUNCER_LOG "$dir/pgbouncer.log"
		} | tee "$STATE/pgbouncer.env"
		;;
	stop)
		stop_pidfile pgbouncer "$dir/pgbouncer.pid" 20
		rm -f "$STATE/pgbouncer.env"
		;;
	status)
		if pid_alive "$dir/pgbouncer.pid"; then
			echo "pgbouncer: running, 127.0.0.1:$(cat "$dir/port"), log $dir/pgbouncer.log"
		else
			echo "pgbouncer: stopped"
		fi
		;;
	*) die "usage: services.sh pgbouncer start [session|transaction|statement] | stop | status" ;;
	esac
}
