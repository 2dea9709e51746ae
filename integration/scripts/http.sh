# shellcheck shell=bash
# What the HTTP edge's tests run against: nginx (Debian's package) as a real
# target over TLS with its own CA, serving static files (a small text file, a
# 64 MiB file, gzip-compressed text, chunked gzip responses, keep-alive), and a
# Python venv with requests and websockets from PyPI for the Python clients.
# The benchmark starts its own nginx instances from TAPLINE_NGINX_BIN.
# Sourced by integration/services.sh.

HTTP_DIR=$STATE/http
REQUESTS_VERSION=2.34.2
WEBSOCKETS_VERSION=17.4
HTTP_VENV=$CACHE/http-venv-$REQUESTS_VERSION-$WEBSOCKETS_VERSION

http_packages() {
	[[ -x /usr/sbin/nginx ]] || echo nginx-light
	command -v openssl >/dev/null || echo openssl
	python3 -c 'import ensurepip' 2>/dev/null || echo python3-venv
}

# http_venv: the Python clients' venv, keyed by the versions it pins.
http_venv() {
	[[ -f $HTTP_VENV/.complete ]] && return 0
	log "installing requests $REQUESTS_VERSION and websockets $WEBSOCKETS_VERSION into $HTTP_VENV"
	rm -rf "$HTTP_VENV"
	python3 -m venv "$HTTP_VENV" || die "python3 -m venv $HTTP_VENV failed"
	"$HTTP_VENV/bin/pip" install -q --disable-pip-version-check \
		"requests==$REQUESTS_VERSION" "websockets==$WEBSOCKETS_VERSION" >"$CACHE/http-venv.log" 2>&1 ||
		die "pip install into $HTTP_VENV failed; see $CACHE/http-venv.log"
	touch "$HTTP_VENV/.complete"
}

# http_content: the files nginx serves (made once; the large one is random).
http_content() {
	local root=$HTTP_DIR/www
	mkdir -p "$root"
	[[ -f $root/hello.txt ]] || printf 'hello from nginx\n' >"$root/hello.txt"
	[[ -f $root/large.bin ]] || head -c $((64 << 20)) /dev/urandom >"$root/large.bin"
	if [[ ! -f $root/words.txt ]]; then
		local i
		for ((i = 0; i < 20000; i++)); do echo "line $i: the quick brown fox jumps over the lazy dog"; done >"$root/words.txt"
	fi
}

# http_tls: a CA and a server certificate for 127.0.0.1 and localhost.
http_tls() {
	[[ -f $HTTP_DIR/server.crt ]] && return 0
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=tapline test CA" \
		-keyout "$HTTP_DIR/ca.key" -out "$HTTP_DIR/ca.crt" 2>/dev/null || die "openssl: CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$HTTP_DIR/server.key" -out "$HTTP_DIR/server.csr" 2>/dev/null || die "openssl: CSR"
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$HTTP_DIR/san.ext"
	openssl x509 -req -in "$HTTP_DIR/server.csr" -CA "$HTTP_DIR/ca.crt" -CAkey "$HTTP_DIR/ca.key" -CAcreateserial \
		-days 3650 -extfile "$HTTP_DIR/san.ext" -out "$HTTP_DIR/server.crt" 2>/dev/null || die "openssl: certificate"
}

http_write_config() {
	local port=$1
	mkdir -p "$HTTP_DIR/tmp"
	cat >"$HTTP_DIR/nginx.conf" <<CONF
# Written by tapline integration/scripts/http.sh; rewritten at every start.
daemon on;
worker_processes 1;
pid $HTTP_DIR/nginx.pid;
error_log $HTTP_DIR/error.log warn;
events { worker_connections 1024; }
http {
    access_log $HTTP_DIR/access.log;
    client_body_temp_path $HTTP_DIR/tmp/body;
    proxy_temp_path $HTTP_DIR/tmp/proxy;
    fastcgi_temp_path $HTTP_DIR/tmp/fastcgi;
    uwsgi_temp_path $HTTP_DIR/tmp/uwsgi;
    scgi_temp_path $HTTP_DIR/tmp/scgi;
    types { text/plain txt; application/octet-stream bin; application/json json; }
    keepalive_requests 10000;
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $HTTP_DIR/server.crt;
        ssl_certificate_key $HTTP_DIR/server.key;
        root $HTTP_DIR/www;
        gzip on;
        gzip_types text/plain application/json;
        gzip_min_length 64;
        location = /echo-auth { default_type text/plain; return 200 "auth=\$http_authorization\n"; }
    }
}
CONF
}

http_up() {
	http_venv
	mkdir -p "$HTTP_DIR"
	http_content
	http_tls
	local port old
	old=$(cat "$HTTP_DIR/port" 2>/dev/null || true)
	if pid_alive "$HTTP_DIR/nginx.pid" && [[ -n $old ]] && port_listening "$old"; then
		port=$old
		note "nginx already running on 127.0.0.1:$port (pid $(pid_of "$HTTP_DIR/nginx.pid"))"
	else
		stop_pidfile nginx "$HTTP_DIR/nginx.pid" 10
		port=$(pick_port "$old")
		echo "$port" >"$HTTP_DIR/port"
		http_write_config "$port"
		/usr/sbin/nginx -t -c "$HTTP_DIR/nginx.conf" -e "$HTTP_DIR/error.log" >"$HTTP_DIR/check.log" 2>&1 ||
			die "nginx rejects $HTTP_DIR/nginx.conf; see $HTTP_DIR/check.log"
		log "starting nginx on 127.0.0.1:$port"
		run_detached /usr/sbin/nginx -c "$HTTP_DIR/nginx.conf" -e "$HTTP_DIR/error.log" ||
			die "nginx failed to start; see $HTTP_DIR/error.log"
		wait_until 20 "nginx on 127.0.0.1:$port" "$HTTP_DIR/error.log" - port_listening "$port"
	fi
	{
		env_line TAPLINE_NGINX_ADDR "127.0.0.1:$port"
		env_line TAPLINE_NGINX_CA "$HTTP_DIR/ca.crt"
		env_line TAPLINE_NGINX_ROOT "$HTTP_DIR/www"
		env_line TAPLINE_NGINX_BIN /usr/sbin/nginx
		env_line TAPLINE_NGINX_LOG "$HTTP_DIR/error.log"
		env_line TAPLINE_HTTP_PYTHON "$HTTP_VENV/bin/python"
	} >"$STATE/parts/http.env"
}

http_down() {
	stop_pidfile nginx "$HTTP_DIR/nginx.pid" 10
}

http_status() {
	if pid_alive "$HTTP_DIR/nginx.pid"; then
		echo "nginx: running, pid $(pid_of "$HTTP_DIR/nginx.pid"), 127.0.0.1:$(cat "$HTTP_DIR/port"), log $HTTP_DIR/error.log"
	else
		echo "nginx: stopped"
	fi
}
