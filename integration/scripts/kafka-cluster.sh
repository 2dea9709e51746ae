# shellcheck shell=bash
# A three-broker Apache Kafka KRaft cluster for the fault campaign (make chaos):
# the jars, storage format and class-data-sharing archive of the single broker
# (scripts/kafka.sh), three combined broker+controller nodes on loopback ports,
# replication factor 3 and min.insync.replicas=2 by default. The single broker
# (service kafka) stays what `make test` uses. Sourced by integration/services.sh.

KCLUSTER_DIR=$STATE/kafka-cluster
KCLUSTER_NODES=(1 2 3)

kcluster_packages() { kafka_packages; }

# kcluster_write_config NODE: server.properties of one node; ports come from
# $KCLUSTER_DIR/ports ("PORT CPORT" per line, node 1 first).
kcluster_write_config() {
	local n=$1 dir=$KCLUSTER_DIR/node$1 voters="" i p c port cport
	i=1
	while read -r p c; do
		voters+="${voters:+,}$i@127.0.0.1:$c"
		((i == n)) && port=$p cport=$c
		i=$((i + 1))
	done <"$KCLUSTER_DIR/ports"
	mkdir -p "$dir"
	cat >"$dir/server.properties" <<CFG
# Written by tapline integration/scripts/kafka-cluster.sh; rewritten at every start.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
num.network.threads=2
num.io.threads=2
background.threads=2
log.segment.bytes=67108864
CFG
	printf '%s %s\n' "$port" "$cport" >"$dir/ports"
}

# kcluster_format: format the three nodes' storage with one cluster id (once;
# a node whose data survives a restart keeps it).
kcluster_format() {
	local n cid dir
	cid=$(cat "$KCLUSTER_DIR/cluster-id" 2>/dev/null || true)
	# An id starting with '-' cannot be formatted (kafka_cluster_id); earlier
	# runs could write one, and it would fail every start after.
	if [[ -z $cid || $cid == -* ]]; then
		cid=$(kafka_cluster_id)
		echo "$cid" >"$KCLUSTER_DIR/cluster-id"
	fi
	for n in "${KCLUSTER_NODES[@]}"; do
		dir=$KCLUSTER_DIR/node$n
		[[ -f $dir/data/meta.properties ]] && continue
		rm -rf "$dir/data"
		"$JAVA" -cp "$(cat "$KAFKA_HOME/classpath")" \
			-Dlog4j2.configurationFile="$SCRIPT_DIR/scripts/kafka.log4j2.yaml" \
			kafka.tools.StorageTool format --cluster-id="$cid" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
			die "kafka-cluster: storage format of node $n failed; see $dir/format.log"
	done
}

# kcluster_ports: reuse the ports of the last run when they are free.
kcluster_ports() {
	local old=() n p c out=""
	[[ -f $KCLUSTER_DIR/ports ]] && mapfile -t old <"$KCLUSTER_DIR/ports"
	for n in "${KCLUSTER_NODES[@]}"; do
		read -r p c <<<"${old[n - 1]:-}"
		p=$(pick_port "${p:-}")
		c=$(pick_port "${c:-}")
		out+="$p $c"$'\n'
	done
	printf '%s' "$out" >"$KCLUSTER_DIR/ports"
}

kcluster_brokers() { cut -d' ' -f1 "$KCLUSTER_DIR/ports" | sed 's/^/127.0.0.1:/' | paste -sd,; }

kcluster_running() {
	local n
	for n in "${KCLUSTER_NODES[@]}"; do pid_alive "$KCLUSTER_DIR/node$n/pid" || return 1; done
}

# kcluster_start_node NODE: start one node in the background (its config is written).
kcluster_start_node() {
	local dir=$KCLUSTER_DIR/node$1
	pid_alive "$dir/pid" && return 0
	kafka_java_args "$dir" 384m
	[[ -f $dir/kafka.log ]] && mv -f "$dir/kafka.log" "$dir/kafka.log.1"
	echo "---- start $(date -Is) node $1" >>"$dir/kafka.log"
	daemonize "$dir/kafka.log" "$dir/pid" "${KAFKA_ARGS[@]}"
}

# kcluster_all_ready PORT...: every node's Metadata lists three brokers and a controller.
kcluster_all_ready() {
	local p m
	for p in "$@"; do
		m=$(kafka_metadata "$p" 2>/dev/null) || return 1
		read -r -a m <<<"$m"
		((m[0] == 3 && m[1] >= 0)) || return 1
	done
}

kcluster_up() {
	kafka_fetch
	kafka_template
	kafka_cds
	mkdir -p "$KCLUSTER_DIR"
	local n ports
	if kcluster_running; then
		note "kafka-cluster already running on $(kcluster_brokers)"
	else
		for n in "${KCLUSTER_NODES[@]}"; do stop_pidfile "kafka-cluster node $n" "$KCLUSTER_DIR/node$n/pid" 30; done
		kcluster_ports
		for n in "${KCLUSTER_NODES[@]}"; do kcluster_write_config "$n"; done
		kcluster_format
		log "starting a three-broker Kafka $KAFKA_VERSION cluster on $(kcluster_brokers)"
		for n in "${KCLUSTER_NODES[@]}"; do kcluster_start_node "$n"; done
	fi
	mapfile -t ports < <(cut -d' ' -f1 "$KCLUSTER_DIR/ports")
	# Three JVMs starting at once on two busy cores: two minutes is not always enough.
	wait_until 300 "Kafka cluster ($(kcluster_brokers)) with three brokers" "$KCLUSTER_DIR/node1/kafka.log" - kcluster_all_ready "${ports[@]}"
	note "ready: three brokers, RF=3, min.insync.replicas=2"
	{
		env_line TAPLINE_KAFKA_CLUSTER_BROKERS "$(kcluster_brokers)"
		env_line TAPLINE_KAFKA_CLUSTER_DIR "$KCLUSTER_DIR"
	} >"$STATE/parts/kafka-cluster.env"
}

# kcluster_down stops the nodes side by side: one after the other, the last ones
# wait out their timeout for a controller quorum that is already gone.
kcluster_down() {
	local n pids=()
	for n in "${KCLUSTER_NODES[@]}"; do
		stop_pidfile "kafka-cluster node $n" "$KCLUSTER_DIR/node$n/pid" 60 &
		pids+=($!)
	done
	wait "${pids[@]}"
}

kcluster_status() {
	local n
	for n in "${KCLUSTER_NODES[@]}"; do
		if pid_alive "$KCLUSTER_DIR/node$n/pid"; then
			echo "kafka-cluster node $n: running, pid $(pid_of "$KCLUSTER_DIR/node$n/pid"), $(sed -n "${n}p" "$KCLUSTER_DIR/ports" | sed 's/^/127.0.0.1:/;s/ / controller :/'), log $KCLUSTER_DIR/node$n/kafka.log"
		else
			echo "kafka-cluster node $n: stopped"
		fi
	done
}

# `services.sh kafka-cluster-node start|stop N`: restart one node of the cluster
# with its ports and data (the fault campaign kills and restarts brokers).
kcluster_node_cmd() {
	local sub=${1:-} n=${2:-}
	[[ $n =~ ^[123]$ ]] || die "usage: services.sh kafka-cluster-node start|stop 1|2|3"
	[[ -f $KCLUSTER_DIR/ports ]] || die "no kafka-cluster; run: services.sh up kafka-cluster"
	case $sub in
	start)
		kcluster_write_config "$n"
		kcluster_start_node "$n"
		# A restarted node reloads every partition it holds: slow on a loaded machine.
		wait_until 300 "kafka-cluster node $n" "$KCLUSTER_DIR/node$n/kafka.log" "$KCLUSTER_DIR/node$n/pid" \
			kafka_ready "$(sed -n "${n}p" "$KCLUSTER_DIR/ports" | cut -d' ' -f1)"
		;;
	stop) stop_pidfile "kafka-cluster node $n" "$KCLUSTER_DIR/node$n/pid" 60 ;;
	*) die "kafka-cluster-node: unknown subcommand $sub" ;;
	esac
}
