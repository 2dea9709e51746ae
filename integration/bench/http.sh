#!/usr/bin/env bash
# integration/bench/http.sh — the HTTP edge against the same nginx directly.
#
#   integration/services.sh up kafka http        # once
#   integration/bench/http.sh                     # BENCH_HTTP_N=20000, BENCH_HTTP_MB=1024
#
# Targets: direct (nginx), nginx-proxy (a second nginx as a plain reverse
# proxy, the pooler of HTTP: records nothing), go-proxy (Go's httputil.ReverseProxy
# in the same place, `benchhelper goproxy`: Go's HTTP stack and TLS on both hops,
# h2 to the target as the gateways speak it, recording nothing), strict and
# buffered (a tapline gateway in each mode, recording to a private Kafka broker). Workloads, each over HTTP/1.1 (CONC
# connections) and h2 (CONC streams on one connection), TLS on both hops:
#   get    GET of a 200-byte JSON file, BENCH_HTTP_N requests, BENCH_HTTP_CONC=8
#   put    PUT of a 1 MiB JSON body (nginx WebDAV writes it), BENCH_HTTP_N/50 requests
# and per target: requests/s, p50/p99 latency, the ratio to direct and to the
# nginx proxy, CPU µs per request of the gateway (or proxy), the Kafka broker
# and the target nginx, read from /proc, and for the gateways the frames recorded
# per request and per produced batch (from their metrics).
# Then a BENCH_HTTP_MB MiB upload and download through each target, MiB/s, with
# the gateway's (or proxy's) resident memory sampled every 50 ms (peak against idle), and the
# CPU per MiB of the gateway (or proxy), the broker and the target nginx from /proc.
# BENCH_HTTP_UPSTREAM_H2=false has the gateways speak HTTP/1.1 to the target
# (kept-alive connections, as the nginx proxy does) instead of h2.
# BENCH_PPROF=DIR saves a CPU profile of the gateway for each gateway row there
# (BENCH_PPROF_SECONDS, default 10: the profile covers a row's first seconds).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
N=${BENCH_HTTP_N:-20000}
CONC=${BENCH_HTTP_CONC:-8}
MB=${BENCH_HTTP_MB:-1024}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka http" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME TAPLINE_KAFKA_BROKERS \
	TAPLINE_NGINX_BIN TAPLINE_NGINX_CA

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench-http.XXXXXX")
pids=()
topic=
nginx_pid=
cleanup() {
	[[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null || true
	stop_pids
	[[ -n $topic && ${BENCH_KAFKA:-private} == shared ]] && "$work/benchhelper" deltopic "$brokers" "$topic" 2>/dev/null || true
	[[ -n ${BENCH_KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
tls_dir=$TAPLINE_SERVICES_DIR/http

build_tools
start_issuer
start_kafka
topic=tapline.bench.http.$(date +%s)
create_topic "$brokers" "$topic"
warm_kafka "$topic"

# nginx_conf NAME PORT LOCATIONS: a one-worker nginx configuration over TLS.
nginx_conf() {
	local name=$1 port=$2 locations=$3
	mkdir -p "$work/$name"
	cat >"$work/$name/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/$name/nginx.pid;
error_log $work/$name/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$name/body;
    proxy_temp_path $work/$name/proxy;
    fastcgi_temp_path $work/$name/fastcgi;
    uwsgi_temp_path $work/$name/uwsgi;
    scgi_temp_path $work/$name/scgi;
    types { application/json json; application/octet-stream bin; }
    keepalive_requests 1000000;
    http2_max_concurrent_streams 256;
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $tls_dir/server.crt;
        ssl_certificate_key $tls_dir/server.key;
        client_max_body_size 0;
$locations
    }
}
CONF
}

# The target: nginx serving this run's files. PUT bodies are written to a file
# (WebDAV), so nginx reads every byte: a target that answered before reading
# would flatter the baseline.
start_nginx() {
	mkdir -p "$work/www/sink"
	# nginx's worker reads and writes the files as an unprivileged user
	chmod 755 "$work" "$work/www"
	chmod 777 "$work/www/sink"
	head -c 200 /dev/zero | tr '\0' 'x' | sed 's/^/{"items":"/; s/$/"}/' >"$work/www/small.json"
	nginx_port=$(free_port)
	nginx_conf nginx "$nginx_port" "        root $work/www;
        location /sink/ { dav_methods PUT; client_body_buffer_size 1m; }"
	"$TAPLINE_NGINX_BIN" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
	nginx_pid=$!
	wait_port "$nginx_port" nginx
}

# The pooler of HTTP: a second nginx as a plain reverse proxy (TLS both hops,
# kept-alive upstream connections, no buffering), recording nothing.
start_proxy() {
	proxy_port=$(free_port)
	nginx_conf proxy "$proxy_port" "        location / {
            proxy_pass https://target;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_ssl_session_reuse on;
            proxy_request_buffering off;
            proxy_buffering off;
        }
    }
    upstream target {
        server 127.0.0.1:$nginx_port;
        keepalive 64;"
	"$TAPLINE_NGINX_BIN" -c "$work/proxy/nginx.conf" -e "$work/proxy/error.log" &
	proxy_pid=$!
	pids+=("$proxy_pid")
	wait_port "$proxy_port" "nginx proxy"
}

# start_gateway MODE: sets gw_port and gw_pid. The gateway serves the nginx test
# certificate, so one CA checks both hops.
start_gateway() {
	local mode=$1 port metrics
	port=$(free_port)
	metrics=$(free_port)
	cat >"$work/$mode.yaml" <<EOF
gateway_id: bench-http-$mode
data_dir: $work/gw-$mode
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: $mode}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
metrics: {listen: "127.0.0.1:$metrics"${BENCH_PPROF:+, pprof: true}}
http: {listen: "127.0.0.1:$port", tls_cert: $tls_dir/server.crt, tls_key: $tls_dir/server.key, routing: path}
targets:
  - name: web
    protocol: http
    address: "127.0.0.1:$nginx_port"
    groups: [bench]
    http: {ca_file: $TAPLINE_NGINX_CA, http2: ${BENCH_HTTP_UPSTREAM_H2:-true}}
EOF
	"$tapline" gateway --config "$work/$mode.yaml" --log-level "${BENCH_GW_LOG:-warn}" >"$work/gateway-$mode.log" 2>&1 &
	pids+=($!)
	gw_pid=$!
	wait_port "$port" "gateway ($mode)"
	gw_port=$port
	gw_metrics=$metrics
}

start_nginx
start_proxy
goproxy_port=$(free_port)
"$work/benchhelper" goproxy "127.0.0.1:$goproxy_port" "https://127.0.0.1:$nginx_port" "$tls_dir/server.crt" "$tls_dir/server.key" "$TAPLINE_NGINX_CA" &
goproxy_pid=$!
pids+=("$goproxy_pid")
wait_port "$goproxy_port" "Go proxy"
log "gateways (strict, buffered)"
start_gateway strict
strict_port=$gw_port strict_pid=$gw_pid strict_metrics=$gw_metrics
start_gateway buffered
buffered_port=$gw_port buffered_pid=$gw_pid buffered_metrics=$gw_metrics

# profile_start TARGET NAME / profile_wait: a CPU profile of a gateway row.
profiling=
profile_start() {
	[[ -n ${BENCH_PPROF:-} && ($1 == strict || $1 == buffered) ]] || return 0
	local m=${1}_metrics
	mkdir -p "$BENCH_PPROF"
	curl -fsS -o "$BENCH_PPROF/$2.pprof" \
		"http://127.0.0.1:${!m}/debug/pprof/profile?seconds=${BENCH_PPROF_SECONDS:-10}" &
	profiling=$!
}
profile_wait() {
	[[ -n $profiling ]] && wait "$profiling" || true
	profiling=
}

# base TARGET: sets url prefix, token and the gateway pid ("-" for direct).
base() {
	case $1 in
	direct) url=https://127.0.0.1:$nginx_port tok=- proxy=- ;;
	nginx-proxy) url=https://127.0.0.1:$proxy_port tok=- proxy=$proxy_pid ;;
	go-proxy) url=https://127.0.0.1:$goproxy_port tok=- proxy=$goproxy_pid ;;
	strict) url=https://127.0.0.1:$strict_port/web tok=$token proxy=$strict_pid ;;
	buffered) url=https://127.0.0.1:$buffered_port/web tok=$token proxy=$buffered_pid ;;
	esac
}

# recorded METRICS_PORT: "frames batch_sum batch_count" from a gateway's metrics:
# frames Kafka acknowledged, and the frames-per-batch histogram's sum and count.
recorded() {
	curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '
		/^tapline_recorder_frames_total/ { f += $2 }
		/^tapline_recorder_batch_frames_sum/ { s = $2 }
		/^tapline_recorder_batch_frames_count/ { c = $2 }
		END { printf "%d %d %d\n", f, s, c }'
}

# load TARGET WORKLOAD PROTO: one line "seconds requests p50_us p99_us gateway_us broker_us nginx_us
# frames_per_request frames_per_batch" (the proxy's CPU is in the gateway column for
# nginx-proxy; the frame columns are "-" for the nginx rows).
load() {
	local target=$1 workload=$2 proto=$3 n path body before after out
	base "$target"
	case $workload in
	get) n=$N path=/small.json body=0 ;;
	put) n=$((N / 50)) path=/sink/$target.json body=$((1 << 20)) ;;
	esac
	local m=${target//-/_}_metrics r0="0 0 0" r1="0 0 0"
	profile_start "$target" "$target-$workload-$proto"
	[[ -n ${!m:-} ]] && r0=$(recorded "${!m}")
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$nginx_pid")
	out=$("$work/benchhelper" http "$url$path" "$n" "$CONC" "$body" "$proto" "$tok" "$TAPLINE_NGINX_CA")
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$nginx_pid")
	[[ -n ${!m:-} ]] && r1=$(recorded "${!m}")
	profile_wait >&2
	echo "$(cut -d' ' -f1,2,4,5 <<<"$out") $(awk -v b="$before" -v a="$after" -v p="$proxy" -v r0="$r0" -v r1="$r1" -v n="$n" \
		'BEGIN { split(b, x, " "); split(a, y, " "); split(r0, f, " "); split(r1, g, " ")
			fr = "-"; fb = "-"
			if (g[1] > f[1]) fr = sprintf("%.1f", (g[1] - f[1]) / n)
			if (g[3] > f[3]) fb = sprintf("%.1f", (g[2] - f[2]) / (g[3] - f[3]))
			printf "%s %d %d %s %s", p == "-" ? "-" : y[1] - x[1], y[2] - x[2], y[3] - x[3], fr, fb }')"
}

results=$work/results
: >"$results"
for workload in get put; do
	for proto in h1 h2; do
		# a short warm-up per target (TLS sessions, the issuer's keys, page cache)
		for target in direct nginx-proxy go-proxy strict buffered; do
			base "$target"
			"$work/benchhelper" http "$url/small.json" 200 "$CONC" 0 "$proto" "$tok" "$TAPLINE_NGINX_CA" >/dev/null
		done
		for target in ${BENCH_HTTP_TARGETS:-direct nginx-proxy go-proxy strict buffered}; do
			log "$workload $proto $target"
			echo "$workload $proto $target $(load "$target" "$workload" "$proto")" >>"$results"
		done
	done
done

# Large bodies: MB MiB up and down through each target, timed, with the
# resident memory of the gateway (or proxy) sampled meanwhile.
log "${MB} MiB file"
head -c "$((MB << 20))" /dev/urandom >"$work/www/big.bin"
stream() {
	local target=$1 dir=$2 stop=$work/stop.$1.$2 t0 t1 ok=0 sampler=
	base "$target"
	rm -f "$stop" "$work/curl.out" "$work/www/sink/up.bin"
	drop_caches "$work/www/big.bin"
	if [[ $proxy != - ]]; then
		"$work/benchhelper" rss "$proxy" "$stop" >"$work/rss.$target.$dir" &
		sampler=$!
		pids+=("$sampler")
	fi
	local auth=()
	[[ $tok != - ]] && auth=(-H "Authorization: Bearer $tok")
	profile_start "$target" "$target-big-$dir"
	local before after
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$nginx_pid")
	t0=$(date +%s.%N)
	if [[ $dir == up ]]; then
		curl -sS --fail-with-body --cacert "$TAPLINE_NGINX_CA" "${auth[@]}" -T "$work/www/big.bin" -o "$work/curl.out" "$url/sink/up.bin" || ok=$?
	else
		curl -sS --fail-with-body --cacert "$TAPLINE_NGINX_CA" "${auth[@]}" -o "$work/curl.out" "$url/big.bin" || ok=$?
	fi
	t1=$(date +%s.%N)
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$nginx_pid")
	profile_wait
	touch "$stop"
	[[ -n $sampler ]] && wait "$sampler"
	if ((ok != 0)); then
		echo "bench: $MB MiB $dir through $target failed (curl $ok): $(head -c 300 "$work/curl.out")" >&2
		exit 1
	fi
	echo "big $target $dir $(calc "$t1 - $t0") $(cat "$work/rss.$target.$dir" 2>/dev/null || echo "- -") $(cpu_delta "$before" "$after" "$proxy")" >>"$results"
}
for target in direct nginx-proxy go-proxy strict buffered; do
	for dir in up down; do
		log "${MB} MiB $dir through $target"
		stream "$target" "$dir"
	done
done

printf '\nHTTP: nginx over TLS, %s connections (h1) or streams on one connection (h2); GET of a 200-byte JSON file x%s, PUT of 1 MiB x%s; Kafka %s; 2 cores shared by everything\n\n' \
	"$CONC" "$N" "$((N / 50))" "$brokers (${BENCH_KAFKA:-private})"
printf 'Latency per request (µs); CPU µs per request from /proc: gateway (or the nginx proxy), Kafka broker, target nginx\n\n'
awk -v mb="$MB" '
	$1 == "get" || $1 == "put" { k = $1 " " $2; s[k, $3] = $4; n[k, $3] = $5; p50[k, $3] = $6; p99[k, $3] = $7; gw[k, $3] = $8; br[k, $3] = $9; ng[k, $3] = $10; fr[k, $3] = $11; fb[k, $3] = $12 }
	$1 == "big" { secs[$2, $3] = $4; rss[$2, $3] = $5 == "-" ? "-" : sprintf("%.0f → %.0f", $5 / 1024, $6 / 1024)
		bgw[$2, $3] = $7; bbr[$2, $3] = $8; bng[$2, $3] = $9 }
	function permb(v) { return v == "-" ? "-" : sprintf("%.0f", v / mb) }
	END {
		printf "| workload | target | req/s | vs direct | vs nginx proxy | p50 µs | p99 µs | gateway µs/req | broker µs/req | nginx µs/req | frames/req | frames/batch |\n"
		printf "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
		split("get h1,get h2,put h1,put h2", order, ",")
		split("direct nginx-proxy go-proxy strict buffered", ts, " ")
		for (o = 1; o <= 4; o++) {
			k = order[o]
			for (i = 1; i <= 5; i++) {
				t = ts[i]
				r = n[k, t] / s[k, t]
				printf "| %s | %s | %.0f | %.2f | %.2f | %d | %d | %s | %.0f | %.0f | %s | %s |\n", k, t, r, r / (n[k, "direct"] / s[k, "direct"]),
					r / (n[k, "nginx-proxy"] / s[k, "nginx-proxy"]), p50[k, t], p99[k, t],
					gw[k, t] == "-" ? "-" : sprintf("%.0f", gw[k, t] / n[k, t]), br[k, t] / n[k, t], ng[k, t] / n[k, t], fr[k, t], fb[k, t]
			}
		}
		printf "\n%d MiB in one request (curl, HTTP/2): MiB/s, the resident memory (MiB, idle → peak) of the gateway or proxy meanwhile, and CPU µs per MiB from /proc (up · down): gateway or proxy, Kafka broker, target nginx\n\n", mb
		printf "| target | upload MiB/s | vs direct | download MiB/s | vs direct | RSS upload | RSS download | gateway µs/MiB | broker µs/MiB | nginx µs/MiB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
		for (i = 1; i <= 5; i++) {
			t = ts[i]
			printf "| %s | %.0f | %.2f | %.0f | %.2f | %s | %s | %s · %s | %s · %s | %s · %s |\n", t, mb / secs[t, "up"], secs["direct", "up"] / secs[t, "up"],
				mb / secs[t, "down"], secs["direct", "down"] / secs[t, "down"], rss[t, "up"], rss[t, "down"],
				permb(bgw[t, "up"]), permb(bgw[t, "down"]), permb(bbr[t, "up"]), permb(bbr[t, "down"]), permb(bng[t, "up"]), permb(bng[t, "down"])
		}
	}' "$results"
