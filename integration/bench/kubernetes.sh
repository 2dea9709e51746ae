#!/usr/bin/env bash
# integration/bench/kubernetes.sh — the Kubernetes edge against the same API
# server directly.
#
#   integration/services.sh up kafka http kubernetes   # once
#   integration/bench/kubernetes.sh                     # BENCH_KUBE_N=5000, BENCH_KUBE_MB=256
#
# Targets: direct (the test cluster's kube-apiserver, as client-go reaches it:
# HTTP/2 over TLS, a bearer token), nginx-proxy (nginx as a plain TLS reverse
# proxy in front of it, WebSocket upgrades passed: what any extra hop costs,
# recording nothing), go-proxy (Go's httputil.ReverseProxy in the same place,
# `benchhelper goproxy`: Go's HTTP/2 and TLS on both hops, recording nothing),
# go-proxy-imp (the same, calling with the gateway's token and impersonating
# an agent, as the gateway does by default: the API server's checks included),
# strict and buffered (a tapline gateway in each mode, recording to a private
# Kafka broker, impersonating the agent; BENCH_KUBE_IMPERSONATE=false: not).
#   calls  GET of one pod, BENCH_KUBE_N times over BENCH_KUBE_CONC=8 streams:
#          calls/s, p50/p99, and CPU µs per call of the gateway, the broker,
#          kube-apiserver and etcd, read from /proc
#   kubectl  `kubectl get pod POD -o name`, BENCH_KUBE_KUBECTL_N=100 times one
#          after the other (a CI script's shape: a new process, a new
#          connection and TLS handshake per call): calls/s and CPU µs per call
#   exec   `kubectl exec POD -- head -c BENCH_KUBE_MB MiB`: stdout MiB/s
#          with CPU µs per MiB of the gateway (or proxy), the broker,
#          kube-apiserver and etcd
# BENCH_PPROF=DIR saves there a CPU profile of each gateway during its calls
# row (the first BENCH_PPROF_CALL_SECONDS=2) and its exec row, and its metrics
# after its calls row (frames, and frames per record batch).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
N=${BENCH_KUBE_N:-5000}
CONC=${BENCH_KUBE_CONC:-8}
MB=${BENCH_KUBE_MB:-256}
KN=${BENCH_KUBE_KUBECTL_N:-100}
# shellcheck source=integration/bench/lib.sh
source "$repo/integration/bench/lib.sh"
load_env "kafka http kubernetes" TAPLINE_SERVICES_DIR TAPLINE_SERVICES_SCRIPT TAPLINE_KAFKA_RUNTIME \
	TAPLINE_NGINX_CA TAPLINE_NGINX_BIN TAPLINE_KUBE_SERVER TAPLINE_KUBE_CA TAPLINE_KUBE_ADMIN_TOKEN TAPLINE_KUBE_GATEWAY_TOKEN \
	TAPLINE_KUBECTL TAPLINE_KUBE_NAMESPACE TAPLINE_KUBE_POD TAPLINE_KUBE_AGENT_GROUP

work=$(mktemp -d "${TMPDIR:-/tmp}/tapline-bench-kube.XXXXXX")
pids=()
cleanup() {
	stop_pids
	[[ -n ${BENCH_KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
tls_dir=$TAPLINE_SERVICES_DIR/http
kube_dir=$TAPLINE_SERVICES_DIR/kubernetes
api_pid=$(tr -dc '0-9' <"$kube_dir/apiserver.pid")
etcd_pid=$(tr -dc '0-9' <"$kube_dir/etcd/pid")
pod_path=/api/v1/namespaces/$TAPLINE_KUBE_NAMESPACE/pods/$TAPLINE_KUBE_POD

build_tools
start_issuer
start_kafka
topic=tapline.bench.kube.$(date +%s)
create_topic "$brokers" "$topic"
warm_kafka "$topic"

# BENCH_KUBE_IMPERSONATE=false: the gateways call as themselves (`kubernetes:
# {disabled: true}`) with the admin token the proxies pass on, so that the rows
# differ from the proxies' only by the gateway, not by the API server's
# impersonation checks.
kube_opts="{user_prefix: \"\", group_prefix: \"\", extra_groups: [$TAPLINE_KUBE_AGENT_GROUP]}"
printf '%s' "$TAPLINE_KUBE_GATEWAY_TOKEN" >"$work/gateway-token"
if [[ ${BENCH_KUBE_IMPERSONATE:-true} == false ]]; then
	printf '%s' "$TAPLINE_KUBE_ADMIN_TOKEN" >"$work/cluster-token"
	kube_opts="{disabled: true}"
else
	printf '%s' "$TAPLINE_KUBE_GATEWAY_TOKEN" >"$work/cluster-token"
fi
# start_gateway MODE: sets gw_port and gw_pid. The agent's groups are replaced by
# the cluster's agent group (no prefixes), which RBAC lets read the pod.
start_gateway() {
	local mode=$1 port metrics
	port=$(free_port)
	metrics=$(free_port)
	printf -v "${mode}_metrics" %s "$metrics"
	cat >"$work/$mode.yaml" <<EOF
gateway_id: bench-kube-$mode
data_dir: $work/gw-$mode
kafka: {brokers: ["${brokers//,/\",\"}"], topic: $topic, mode: $mode}
oidc: {issuer: "$issuer_url", audience: tapline-gateway}
metrics: {listen: "127.0.0.1:$metrics"${BENCH_PPROF:+, pprof: true}}
http: {listen: "127.0.0.1:$port", tls_cert: $tls_dir/server.crt, tls_key: $tls_dir/server.key, routing: path}
targets:
  - name: cluster
    protocol: kubernetes
    address: "${TAPLINE_KUBE_SERVER#https://}"
    groups: [bench]
    http: {ca_file: $TAPLINE_KUBE_CA, bearer: {file: $work/cluster-token}}
    kubernetes: $kube_opts
EOF
	"$tapline" gateway --config "$work/$mode.yaml" --log-level "${BENCH_GW_LOG:-warn}" >"$work/gateway-$mode.log" 2>&1 &
	pids+=($!)
	gw_pid=$!
	wait_port "$port" "gateway ($mode)"
	gw_port=$port
}

# The baseline hop: nginx terminating TLS (h2 from the client, as client-go
# speaks) and opening TLS to the API server, upgrades passed through.
start_proxy() {
	proxy_port=$(free_port)
	mkdir -p "$work/proxy"
	cat >"$work/proxy/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/proxy/nginx.pid;
error_log $work/proxy/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/proxy/body;
    proxy_temp_path $work/proxy/proxy;
    fastcgi_temp_path $work/proxy/fastcgi;
    uwsgi_temp_path $work/proxy/uwsgi;
    scgi_temp_path $work/proxy/scgi;
    keepalive_requests 1000000;
    http2_max_concurrent_streams 256;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    upstream api { server ${TAPLINE_KUBE_SERVER#https://}; keepalive 64; }
    server {
        listen 127.0.0.1:$proxy_port ssl http2;
        ssl_certificate $tls_dir/server.crt;
        ssl_certificate_key $tls_dir/server.key;
        client_max_body_size 0;
        location / {
            proxy_pass https://api;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_ssl_trusted_certificate $TAPLINE_KUBE_CA;
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
    }
}
CONF
	"$TAPLINE_NGINX_BIN" -c "$work/proxy/nginx.conf" -e "$work/proxy/error.log" &
	proxy_pid=$!
	pids+=("$proxy_pid")
	wait_port "$proxy_port" "nginx proxy"
}

log "nginx proxy"
start_proxy
log "Go proxy"
goproxy_port=$(free_port)
"$work/benchhelper" goproxy "127.0.0.1:$goproxy_port" "$TAPLINE_KUBE_SERVER" "$tls_dir/server.crt" "$tls_dir/server.key" "$TAPLINE_KUBE_CA" &
goproxy_pid=$!
pids+=("$goproxy_pid")
wait_port "$goproxy_port" "Go proxy"
# The same proxy calling as the gateway does: its own token, impersonating an
# agent of the agent group (the API server's impersonation checks included).
log "Go proxy, impersonating"
impproxy_port=$(free_port)
"$work/benchhelper" goproxy "127.0.0.1:$impproxy_port" "$TAPLINE_KUBE_SERVER" "$tls_dir/server.crt" "$tls_dir/server.key" "$TAPLINE_KUBE_CA" \
	"$work/gateway-token" bench-agent "$TAPLINE_KUBE_AGENT_GROUP" &
impproxy_pid=$!
pids+=("$impproxy_pid")
wait_port "$impproxy_port" "Go proxy, impersonating"
log "gateways (strict, buffered)"
start_gateway strict
strict_port=$gw_port strict_pid=$gw_pid
start_gateway buffered
buffered_port=$gw_port buffered_pid=$gw_pid

# base TARGET: sets server, token, CA and the gateway pid ("-" for direct).
base() {
	case $1 in
	direct) server=$TAPLINE_KUBE_SERVER tok=$TAPLINE_KUBE_ADMIN_TOKEN ca=$TAPLINE_KUBE_CA proxy=- ;;
	nginx-proxy) server=https://127.0.0.1:$proxy_port tok=$TAPLINE_KUBE_ADMIN_TOKEN ca=$TAPLINE_NGINX_CA proxy=$proxy_pid ;;
	go-proxy) server=https://127.0.0.1:$goproxy_port tok=$TAPLINE_KUBE_ADMIN_TOKEN ca=$TAPLINE_NGINX_CA proxy=$goproxy_pid ;;
	go-proxy-imp) server=https://127.0.0.1:$impproxy_port tok=unused ca=$TAPLINE_NGINX_CA proxy=$impproxy_pid ;;
	strict) server=https://127.0.0.1:$strict_port/cluster tok=$token ca=$TAPLINE_NGINX_CA proxy=$strict_pid ;;
	buffered) server=https://127.0.0.1:$buffered_port/cluster tok=$token ca=$TAPLINE_NGINX_CA proxy=$buffered_pid ;;
	esac
}

# profile TARGET ROW SECONDS: starts a CPU profile of a gateway target in the
# background (sets prof to its pid), when BENCH_PPROF is set.
profile() {
	prof=
	local m=${1}_metrics
	[[ -n ${BENCH_PPROF:-} && ($1 == strict || $1 == buffered) ]] || return 0
	mkdir -p "$BENCH_PPROF"
	curl -fsS -o "$BENCH_PPROF/$2-$1.pprof" "http://127.0.0.1:${!m}/debug/pprof/profile?seconds=$3" &
	prof=$!
}

# calls TARGET: "seconds calls p50_us p99_us gateway_us broker_us apiserver_us etcd_us"
calls() {
	local before after out prof m=${1}_metrics
	base "$1"
	profile "$1" calls "${BENCH_PPROF_CALL_SECONDS:-2}"
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$api_pid" "$etcd_pid")
	out=$("$work/benchhelper" http "$server$pod_path" "$N" "$CONC" 0 h2 "$tok" "$ca")
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$api_pid" "$etcd_pid")
	if [[ -n $prof ]]; then
		wait "$prof"
		curl -fsS -o "$BENCH_PPROF/calls-$1.metrics" "http://127.0.0.1:${!m}/metrics"
	fi
	echo "$(cut -d' ' -f1,2,4,5 <<<"$out") $(cpu_delta "$before" "$after" "$proxy")"
}

# kubeconfig TARGET: writes $work/kubeconfig.TARGET for kubectl (sets base's variables).
kubeconfig() {
	base "$1"
	cat >"$work/kubeconfig.$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority: "$ca"}}]
users: [{name: u, user: {token: "$tok"}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: $TAPLINE_KUBE_NAMESPACE}}]
current-context: c
EOF
}

# kubectl_loop TARGET: "seconds gateway_us broker_us apiserver_us etcd_us" for
# KN runs of `kubectl get pod`, one after the other.
kubectl_loop() {
	local cfg=$work/kubeconfig.$1 t0 t1 before after i
	kubeconfig "$1"
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$api_pid" "$etcd_pid")
	t0=$(date +%s.%N)
	for ((i = 0; i < KN; i++)); do
		"$TAPLINE_KUBECTL" --kubeconfig "$cfg" get pod "$TAPLINE_KUBE_POD" -o name >/dev/null || {
			echo "bench: kubectl get through $1 failed; see $work" >&2
			exit 1
		}
	done
	t1=$(date +%s.%N)
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$api_pid" "$etcd_pid")
	echo "$(calc "$t1 - $t0") $(cpu_delta "$before" "$after" "$proxy")"
}

# exec_mb TARGET: "seconds gateway_us broker_us apiserver_us etcd_us" for
# `kubectl exec` to stream MB MiB of stdout.
exec_mb() {
	local cfg=$work/kubeconfig.$1 t0 t1 got before after prof m=${1}_metrics
	kubeconfig "$1"
	drop_caches
	profile "$1" exec "${BENCH_PPROF_SECONDS:-5}"
	before=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$api_pid" "$etcd_pid")
	t0=$(date +%s.%N)
	got=$("$TAPLINE_KUBECTL" --kubeconfig "$cfg" exec "$TAPLINE_KUBE_POD" -- head -c "$((MB << 20))" /dev/zero | wc -c)
	t1=$(date +%s.%N)
	after=$("$work/benchhelper" cpu "$proxy" "$broker_pid" "$api_pid" "$etcd_pid")
	if [[ -n $prof ]]; then
		wait "$prof"
		curl -fsS -o "$BENCH_PPROF/exec-$1.metrics" "http://127.0.0.1:${!m}/metrics"
	fi
	if ((got != MB << 20)); then
		echo "bench: exec through $1 streamed $got bytes, not $((MB << 20)); see $work" >&2
		exit 1
	fi
	echo "$(calc "$t1 - $t0") $(cpu_delta "$before" "$after" "$proxy")"
}

results=$work/results
: >"$results"
for target in direct nginx-proxy go-proxy go-proxy-imp strict buffered; do # warm-up: TLS sessions, the issuer's keys, caches
	base "$target"
	"$work/benchhelper" http "$server$pod_path" 200 "$CONC" 0 h2 "$tok" "$ca" >/dev/null
done
for target in ${BENCH_KUBE_TARGETS:-direct nginx-proxy go-proxy go-proxy-imp strict buffered}; do
	log "calls $target"
	echo "calls $target $(calls "$target")" >>"$results"
done
for target in ${BENCH_KUBE_TARGETS:-direct nginx-proxy go-proxy go-proxy-imp strict buffered}; do
	log "kubectl get x$KN $target"
	echo "kubectl $target $(kubectl_loop "$target")" >>"$results"
done
# The broker compiles its large-record path during the first exec; warm it.
log "warm-up: exec ${BENCH_KUBE_WARM_MB:-32} MiB through both gateways (not measured)"
for target in strict buffered; do
	kubeconfig "$target"
	"$TAPLINE_KUBECTL" --kubeconfig "$work/kubeconfig.$target" exec "$TAPLINE_KUBE_POD" -- \
		head -c "$((${BENCH_KUBE_WARM_MB:-32} << 20))" /dev/zero >/dev/null
done
for target in ${BENCH_KUBE_TARGETS:-direct nginx-proxy go-proxy go-proxy-imp strict buffered}; do
	log "exec ${MB} MiB $target"
	echo "exec $target $(exec_mb "$target")" >>"$results"
done

printf '\nKubernetes: kube-apiserver %s with etcd and kwok; GET of one pod x%s over %s h2 streams; exec of %s MiB stdout; Kafka %s; 2 cores shared by everything\n\n' \
	"$("$TAPLINE_KUBECTL" version --client -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | head -1)" "$N" "$CONC" "$MB" "$brokers (${BENCH_KAFKA:-private})"
awk -v mb="$MB" -v kn="$KN" '
	$1 == "calls" { s[$2] = $3; n[$2] = $4; p50[$2] = $5; p99[$2] = $6; gw[$2] = $7; br[$2] = $8; api[$2] = $9; etcd[$2] = $10 }
	$1 == "kubectl" { ks[$2] = $3; kgw[$2] = $4; kbr[$2] = $5; kapi[$2] = $6 }
	$1 == "exec" { ex[$2] = $3; xgw[$2] = $4; xbr[$2] = $5; xapi[$2] = $6; xetcd[$2] = $7 }
	END {
		printf "| target | calls/s | vs direct | vs nginx proxy | p50 µs | p99 µs | gateway µs/call | broker µs/call | apiserver µs/call | etcd µs/call | exec MiB/s | vs direct | vs nginx proxy |\n"
		printf "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
		split("direct nginx-proxy go-proxy go-proxy-imp strict buffered", ts, " ")
		for (i = 1; i <= 6; i++) {
			t = ts[i]
			if (!(t in n)) continue
			r = n[t] / s[t]
			px = ("nginx-proxy" in n) ? sprintf("%.2f", r / (n["nginx-proxy"] / s["nginx-proxy"])) : "-"
			pe = ("nginx-proxy" in ex) ? sprintf("%.2f", ex["nginx-proxy"] / ex[t]) : "-"
			printf "| %s | %.0f | %.2f | %s | %d | %d | %s | %.0f | %.0f | %.0f | %.0f | %.2f | %s |\n", t, r, r / (n["direct"] / s["direct"]), px,
				p50[t], p99[t], gw[t] == "-" ? "-" : sprintf("%.0f", gw[t] / n[t]), br[t] / n[t], api[t] / n[t], etcd[t] / n[t],
				mb / ex[t], ex["direct"] / ex[t], pe
		}
		printf "\n| kubectl get, one after the other | calls/s | vs direct | vs nginx proxy | gateway µs/call | broker µs/call | apiserver µs/call |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
		for (i = 1; i <= 6; i++) {
			t = ts[i]
			if (!(t in ks)) continue
			printf "| %s | %.1f | %.2f | %s | %s | %.0f | %.0f |\n", t, kn / ks[t], ks["direct"] / ks[t],
				("nginx-proxy" in ks) ? sprintf("%.2f", ks["nginx-proxy"] / ks[t]) : "-",
				kgw[t] == "-" ? "-" : sprintf("%.0f", kgw[t] / kn), kbr[t] / kn, kapi[t] / kn
		}
		printf "\n| exec | MiB/s | gateway µs/MiB | broker µs/MiB | apiserver µs/MiB | etcd µs/MiB |\n| --- | ---: | ---: | ---: | ---: | ---: |\n"
		for (i = 1; i <= 6; i++) {
			t = ts[i]
			if (!(t in ex)) continue
			printf "| %s | %.0f | %s | %.0f | %.0f | %.0f |\n", t, mb / ex[t], xgw[t] == "-" ? "-" : sprintf("%.0f", xgw[t] / mb),
				xbr[t] / mb, xapi[t] / mb, xetcd[t] / mb
		}
	}' "$results"
