#!/usr/bin/env bash
# integration/bench/http.sh — HTTP through tapline against the same nginx directly.
#
#   integration/services.sh up kafka http        # once
#   integration/bench/http.sh                    # BENCH_HTTP_N=2000, BENCH_HTTP_BIG_MB=1024
#
# Starts its own nginx (the test services' TLS files, a config with a body
# sink) and a private Kafka broker, and measures, against:
#   direct     nginx itself
#   proxy      a second nginx server block as a plain reverse proxy to it (TLS both
#              sides, upstream keep-alive; records nothing): the baseline the
#              goal compares with (buffered >= 0.8x its requests/s)
#   buffered   a tapline gateway in buffered mode
#   strict     a tapline gateway in strict mode (request head and body chunks
#              forwarded once Kafka acknowledged them)
# 1. requests/s and CPU µs per request (from /proc: gateway, broker, nginx) of a
#    small JSON GET and a 1 MiB POST, HTTP/1.1 and HTTP/2, 8 connections;
# 2. the buffered gateway's RSS (VmRSS, sampled every 0.2 s) while curl
#    uploads and then downloads BENCH_HTTP_BIG_MB MiB through it: idle vs peak.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
N=${BENCH_HTTP_N:-2000}
N_BIG=${BENCH_HTTP_N_BIG:-200}
BIG_MB=${BENCH_HTTP_BIG_MB:-1024}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka http" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME TAPLINE_KAFKA_BROKERS TAPLINE_NGINX_CA TAPLINE_NGINX_BIN

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench-http.XXXXXX")
pids=()
topic=
nginx_pid=
cleanup() {
	[[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null || true
	stop_pids
	[[ -n $topic && ${BENCH_KAFKA:-private} == shared ]] && "$work/benchhelper" deltopic "$brokers" "$topic" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'tail -n 20 "$work"/gateway-*.log >&2' ERR

calc() { awk "BEGIN { printf \"%.1f\", $* }"; }
tls_dir=$(dirname "$TAPLINE_NGINX_CA")

build_tools
go build -o "$work/httpload" ./integration/bench/httpload
start_issuer
start_kafka
topic=tapline.bench.http.$(date +%s)
create_topic "$brokers" "$topic"

log "nginx"
mkdir -p "$work/www" "$work/nginx-tmp"
chmod 755 "$work" "$work/www" # nginx workers run as an unprivileged user
printf '{"id":7,"name":"widget","tags":["a","b"],"price":12.5}\n' >"$work/www/small.json"
truncate -s "${BIG_MB}M" "$work/www/big.bin"
nginx_port=$(free_port)
proxy_port=$(free_port)
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    types { application/json json; application/octet-stream bin; }
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
        ssl_certificate $tls_dir/server.crt;
        ssl_certificate_key $tls_dir/server.key;
        root $work/www;
        client_max_body_size 0;
        location = /sink { return 204; }
    }
    upstream direct { server 127.0.0.1:$nginx_port; keepalive 32; }
    server {
        listen 127.0.0.1:$proxy_port ssl http2;
        ssl_certificate $tls_dir/server.crt;
        ssl_certificate_key $tls_dir/server.key;
        client_max_body_size 0;
        location /web/ {
            proxy_pass https://direct/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_session_reuse on;
        }
    }
}
CONF
"$TAPLINE_NGINX_BIN" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
nginx_pid=$!
wait_port "$nginx_port" nginx
wait_port "$proxy_port" "nginx (proxy)"

# start_gateway MODE: sets gw_port and gw_pid.
start_gateway() {
	local mode=$1 port
	port=$(free_port)
	cat >"$work/$mode.yaml" <<YAML
gateway_id: bench-http-$mode
data_dir: $work/gw-$mode
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: $mode}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
http: {listen: "127.0.0.1:$port", tls_cert: $tls_dir/server.crt, tls_key: $tls_dir/server.key}
targets:
  - name: web
    protocol: http
    address: "127.0.0.1:$nginx_port"
    groups: [bench]
    http: {ca_file: $TAPLINE_NGINX_CA}
YAML
	"$tapline" gateway --config "$work/$mode.yaml" --log-level warn >"$work/gateway-$mode.log" 2>&1 &
	pids+=($!)
	gw_pid=$!
	wait_port "$port" "gateway ($mode)"
	gw_port=$port
}

log "gateways (buffered, strict)"
start_gateway buffered
buffered_port=$gw_port buffered_pid=$gw_pid
start_gateway strict
strict_port=$gw_port strict_pid=$gw_pid

# measure LABEL PROXY_PID BASE_URL HTTP2 N BODY PATH: one table row.
measure() {
	local label=$1 proxy=$2 base=$3 h2=$4 n=$5 body=$6 path=$7 before after out
	local args=(-url "$base$path" -ca "$TAPLINE_NGINX_CA" -n "$n" -c 8 -body "$body")
	[[ $h2 == h2 ]] && args+=(-h2)
	[[ $proxy != - ]] && args+=(-token "$token")
	"$work/httpload" "${args[@]}" -n 50 >/dev/null # warm: connections, TLS, sessions
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$nginx_pid")
	out=$("$work/httpload" "${args[@]}")
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$nginx_pid")
	read -r _ _ rps <<<"$out"
	read -r g0 b0 x0 <<<"$before"
	read -r g1 b1 x1 <<<"$after"
	printf '%-9s %-4s %-10s %10s %12s %12s %12s\n' "$label" "$h2" "$path" "$rps" \
		"$(calc "($g1-$g0)/$n")" "$(calc "($b1-$b0)/$n")" "$(calc "($x1-$x0)/$n")"
}

echo "HTTP: requests/s and CPU µs per request (8 connections; $N small GETs, $N_BIG 1 MiB POSTs; nginx_us: both server blocks)"
printf '%-9s %-4s %-10s %10s %12s %12s %12s\n' target http request req/s gateway_us broker_us nginx_us
for h in h1 h2; do
	for t in direct proxy buffered strict; do
		case $t in
		direct) base=https://127.0.0.1:$nginx_port proxy=- ;;
		proxy) base=https://127.0.0.1:$proxy_port/web proxy=- ;;
		buffered) base=https://127.0.0.1:$buffered_port/web proxy=$buffered_pid ;;
		strict) base=https://127.0.0.1:$strict_port/web proxy=$strict_pid ;;
		esac
		measure "$t" "$proxy" "$base" "$h" "$N" 0 /small.json
		measure "$t" "$proxy" "$base" "$h" "$N_BIG" $((1 << 20)) /sink
	done
done

# rss_during PID CMD...: runs CMD while sampling PID's VmRSS; prints idle and peak MiB.
rss_during() {
	local pid=$1 idle peak=0 r
	shift
	idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	"$@" &
	local cmd=$!
	while kill -0 "$cmd" 2>/dev/null; do
		r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
		((r > peak)) && peak=$r
		sleep 0.2
	done
	wait "$cmd"
	echo "$(calc "$idle/1024") $(calc "$peak/1024")"
}

gw=https://127.0.0.1:$buffered_port/web
echo
echo "HTTP: buffered gateway RSS (MiB) during a $BIG_MB MiB transfer through the edge (curl, HTTP/1.1)"
printf '%-9s %8s %8s\n' transfer idle peak
read -r idle peak < <(rss_during "$buffered_pid" sh -c "head -c ${BIG_MB}M /dev/zero | curl -sS --fail --http1.1 --cacert '$TAPLINE_NGINX_CA' -H 'Authorization: Bearer $token' -H 'Content-Type: application/octet-stream' -T - '$gw/sink' -o /dev/null")
printf '%-9s %8s %8s\n' upload "$idle" "$peak"
read -r idle peak < <(rss_during "$buffered_pid" curl -sS --fail --http1.1 --cacert "$TAPLINE_NGINX_CA" -H "Authorization: Bearer $token" -o /dev/null "$gw/big.bin")
printf '%-9s %8s %8s\n' download "$idle" "$peak"
