# shellcheck shell=bash
# A real Kubernetes API server for the Kubernetes edge's tests: etcd,
# kube-apiserver and kubectl built from the upstream Go modules, and kwok as
# the node (it runs pods on paper, and serves exec, attach, logs and
# port-forward from local commands and files). Built once from the tools
# module integration/tools/kubernetes, niced, and cached under a key that
# changes with that module. Sourced by integration/services.sh.

KUBE_TOOLS=$REPO/integration/tools/kubernetes
KUBE_DIR=$STATE/kubernetes

kube_packages() {
	command -v openssl >/dev/null || echo openssl
}

# kube_home: the cache folder of this build of the cluster's binaries.
kube_home() {
	local version key
	version=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$KUBE_TOOLS/go.mod")
	key=$(cat "$KUBE_TOOLS/go.mod" "$KUBE_TOOLS/go.sum" "$KUBE_TOOLS/build.sh" | sha256sum | cut -c1-12)
	echo "$CACHE/kubernetes-$version-$key"
}

kube_build() {
	local home=$1 t0
	[[ -x $home/bin/kube-apiserver && -x $home/bin/etcd && -x $home/bin/kubectl && -x $home/bin/kwok ]] && return 0
	log "building etcd, kube-apiserver, kubectl and kwok into $home (about 10 minutes on 2 cores, once)"
	t0=$(now_ms)
	mkdir -p "$home"
	nice -n 19 "$KUBE_TOOLS/build.sh" "$home/bin.tmp" >"$home/build.log" 2>&1 ||
		die "building the Kubernetes test cluster failed; see $home/build.log"
	rm -rf "$home/bin"
	mv "$home/bin.tmp" "$home/bin"
	note "done in $((($(now_ms) - t0) / 1000))s"
}

# kube_certs: a CA, the API server's and kwok's serving certificate, the API
# server's client certificate towards the node, and the service account key.
kube_certs() {
	local d=$KUBE_DIR/pki
	[[ -s $d/apiserver.crt ]] && return 0
	mkdir -p "$d"
	(
		cd "$d"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
			-subj "/CN=tapline-test-cluster-ca" -keyout ca.key -out ca.crt
		kube_leaf apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"
		kube_leaf kubelet "/CN=kwok-node" "subjectAltName=IP:127.0.0.1,DNS:localhost"
		kube_leaf kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
		openssl genrsa -out sa.key 2048
		openssl rsa -in sa.key -pubout -out sa.pub
	) >"$KUBE_DIR/pki.log" 2>&1 || die "making the test cluster's certificates failed; see $KUBE_DIR/pki.log"
}

# kube_leaf NAME SUBJECT EXT: a key and a certificate signed by ca.crt (in the cwd).
kube_leaf() {
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr"
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-extfile <(echo "$3") -out "$1.crt"
}

kube_up() {
	local home bin
	home=$(kube_home)
	kube_build "$home"
	bin=$home/bin
	kube_down_quiet
	mkdir -p "$KUBE_DIR/etcd" "$KUBE_DIR/node"
	kube_certs

	local admin gateway etcd_port peer_port api_port node_port fwd_port
	admin=$(secret KUBE_ADMIN_TOKEN)
	gateway=$(secret KUBE_GATEWAY_TOKEN)
	etcd_port=$(pick_port "$(env_get "$KUBE_DIR/ports" ETCD)")
	peer_port=$(pick_port "$(env_get "$KUBE_DIR/ports" PEER)")
	api_port=$(pick_port "$(env_get "$KUBE_DIR/ports" API)")
	node_port=$(pick_port "$(env_get "$KUBE_DIR/ports" NODE)")
	fwd_port=$(pick_port "$(env_get "$KUBE_DIR/ports" FORWARD)")
	printf 'ETCD=%s\nPEER=%s\nAPI=%s\nNODE=%s\nFORWARD=%s\n' "$etcd_port" "$peer_port" "$api_port" "$node_port" "$fwd_port" >"$KUBE_DIR/ports"
	# token,user,uid,"group1,group2"
	printf '%s,admin,admin,system:masters\n%s,tapline-gateway,tapline-gateway\n' "$admin" "$gateway" >"$KUBE_DIR/tokens.csv"

	# Each data store is this run's: a test cluster starts empty.
	rm -rf "$KUBE_DIR/etcd/data"
	daemonize "$KUBE_DIR/etcd.log" "$KUBE_DIR/etcd/pid" "$bin/etcd" --name test \
		--data-dir "$KUBE_DIR/etcd/data" --unsafe-no-fsync \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "test=http://127.0.0.1:$peer_port"
	wait_until 60 "etcd on 127.0.0.1:$etcd_port" "$KUBE_DIR/etcd.log" "$KUBE_DIR/etcd/pid" \
		curl -fsS "http://127.0.0.1:$etcd_port/health"

	local pki=$KUBE_DIR/pki
	daemonize "$KUBE_DIR/apiserver.log" "$KUBE_DIR/apiserver.pid" "$bin/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" \
		--token-auth-file "$KUBE_DIR/tokens.csv" --authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
		--service-cluster-ip-range 10.96.0.0/16 \
		--endpoint-reconciler-type none --disable-admission-plugins ServiceAccount \
		--kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
		--kubelet-preferred-address-types InternalIP \
		--audit-log-path "$KUBE_DIR/audit.log" --audit-policy-file "$(kube_audit_policy)"
	local server=https://127.0.0.1:$api_port
	wait_until 120 "kube-apiserver on $server" "$KUBE_DIR/apiserver.log" "$KUBE_DIR/apiserver.pid" \
		curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $admin" "$server/readyz"

	kube_kubeconfig "$server" "$admin" >"$KUBE_DIR/admin.kubeconfig"
	local kubectl=("$bin/kubectl" --kubeconfig "$KUBE_DIR/admin.kubeconfig")
	kube_objects | "${kubectl[@]}" apply -f - >"$KUBE_DIR/apply.log" 2>&1 ||
		die "creating the test cluster's objects failed; see $KUBE_DIR/apply.log"

	kube_kwok_config "$fwd_port" >"$KUBE_DIR/kwok.yaml"
	: >"$KUBE_DIR/node/pod.log"
	daemonize "$KUBE_DIR/kwok.log" "$KUBE_DIR/kwok.pid" "$bin/kwok" --kubeconfig "$KUBE_DIR/admin.kubeconfig" \
		--config "$KUBE_DIR/kwok.yaml" --manage-all-nodes \
		--node-ip 127.0.0.1 --node-port "$node_port" \
		--tls-cert-file "$pki/kubelet.crt" --tls-private-key-file "$pki/kubelet.key"
	wait_until 120 "kwok running the test pod" "$KUBE_DIR/kwok.log" "$KUBE_DIR/kwok.pid" \
		kube_pod_running "${kubectl[@]}"

	{
		env_line TAPLINE_KUBE_SERVER "$server"
		env_line TAPLINE_KUBE_CA "$pki/ca.crt"
		env_line TAPLINE_KUBE_ADMIN_TOKEN "$admin"
		env_line TAPLINE_KUBE_GATEWAY_TOKEN "$gateway"
		env_line TAPLINE_KUBE_GATEWAY_USER tapline-gateway
		env_line TAPLINE_KUBECTL "$bin/kubectl"
		env_line TAPLINE_KUBE_ADMIN_KUBECONFIG "$KUBE_DIR/admin.kubeconfig"
		env_line TAPLINE_KUBE_NAMESPACE default
		env_line TAPLINE_KUBE_POD shell
		env_line TAPLINE_KUBE_AGENT_GROUP agents
		env_line TAPLINE_KUBE_LOG_FILE "$KUBE_DIR/node/pod.log"
		env_line TAPLINE_KUBE_PORTFORWARD_TARGET "127.0.0.1:$fwd_port"
		env_line TAPLINE_KUBE_AUDIT_LOG "$KUBE_DIR/audit.log"
		env_line TAPLINE_KUBE_LOG "$KUBE_DIR/apiserver.log"
	} >"$STATE/parts/kubernetes.env"
}

# kube_pod_running KUBECTL...: the test pod is Running.
kube_pod_running() {
	[[ $("$@" get pod shell -o 'jsonpath={.status.phase}') == Running ]]
}

kube_kubeconfig() {
	cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $1
    certificate-authority: $KUBE_DIR/pki/ca.crt
users:
- name: admin
  user:
    token: $2
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
EOF
}

# kube_audit_policy: record who did what (the impersonated user shows in the
# events), metadata only.
kube_audit_policy() {
	local f=$KUBE_DIR/audit-policy.yaml
	printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n' >"$f"
	echo "$f"
}

# kube_objects: RBAC for the gateway and the test identities, the node
# and a pod on it.
#   - tapline-gateway may impersonate users, groups and service accounts;
#   - group "agents" may work with pods (exec, attach, logs, port-forward),
#     secrets and config maps in namespace default;
#   - any other group gets nothing (RBAC denials).
kube_objects() {
	cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tapline-impersonator}
rules:
- apiGroups: [""]
  resources: [users, groups, serviceaccounts]
  verbs: [impersonate]
- apiGroups: [authentication.k8s.io]
  resources: [userextras/scopes, uids]
  verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tapline-gateway-impersonates}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tapline-impersonator}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: tapline-gateway}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: agent, namespace: default}
rules:
- apiGroups: [""]
  resources: [pods, pods/log, secrets, configmaps, events]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [pods/exec, pods/attach, pods/portforward]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: agents, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: agent}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: agents}
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node}
---
apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: default}
spec:
  nodeName: kwok-node
  containers:
  - {name: shell, image: busybox}
EOF
}

# kube_kwok_config FORWARD_PORT: kwok's node and pod lifecycles (taken from its module
# source, so they match the kwok built) and where exec, logs, attach and
# port-forward of every pod go: commands run here, in the node folder; logs and
# attach read one CRI-format file the tests append to; port-forward reaches
# FORWARD_PORT, where a test listens.
kube_kwok_config() {
	local src f
	src=$(cd "$KUBE_TOOLS" && go mod download -json sigs.k8s.io/kwok | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	[[ -d $src/kustomize/stage ]] || die "kwok's module source (its node and pod stages) not found; run: (cd $KUBE_TOOLS && go mod download)"
	for f in "$src"/kustomize/stage/node/fast/node-initialize.yaml "$src"/kustomize/stage/pod/fast/pod-*.yaml; do
		echo "---"
		cat "$f"
	done
	cat <<EOF
---
kind: ClusterExec
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {name: exec}
spec:
  execs:
  - local:
      workDir: $KUBE_DIR/node
---
kind: ClusterLogs
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {name: logs}
spec:
  logs:
  - logsFile: $KUBE_DIR/node/pod.log
    follow: true
---
kind: ClusterAttach
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {name: attach}
spec:
  attaches:
  - logsFile: $KUBE_DIR/node/pod.log
---
kind: ClusterPortForward
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {name: port-forward}
spec:
  forwards:
  - target: {port: $1, address: 127.0.0.1}
EOF
}

kube_down_quiet() {
	stop_pidfile kwok "$KUBE_DIR/kwok.pid" 10
	stop_pidfile kube-apiserver "$KUBE_DIR/apiserver.pid" 20
	stop_pidfile etcd "$KUBE_DIR/etcd/pid" 20
}

kube_down() { kube_down_quiet; }

kube_status() {
	if pid_alive "$KUBE_DIR/apiserver.pid"; then
		echo "kubernetes: $(env_get "$STATE/parts/kubernetes.env" TAPLINE_KUBE_SERVER) (log $KUBE_DIR/apiserver.log)"
	else
		echo "kubernetes: stopped"
	fi
}
