# shellcheck shell=bash
# ClickHouse server (Debian's clickhouse-server package, 18.16 on bookworm)
# for the integration tests: own config, data and log dirs, loopback ports for
# the native protocol and HTTP. Runs as root. Sourced by integration/services.sh.

CH_DIR=$STATE/clickhouse
CH_BIN=/usr/sbin/clickhouse-server

ch_packages() {
	[[ -x $CH_BIN ]] || echo clickhouse-server
	command -v curl >/dev/null || echo curl
}

ch_write_config() {
	local tcp=$1 http=$2
	cat >"$CH_DIR/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by tapline integration/scripts/clickhouse.sh; rewritten at every start. -->
<yandex>
  <logger>
    <level>information</level>
    <log>$CH_DIR/log/clickhouse-server.log</log>
    <errorlog>$CH_DIR/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp</tcp_port>
  <http_port>$http</http_port>
  <path>$CH_DIR/data/</path>
  <tmp_path>$CH_DIR/tmp/</tmp_path>
  <user_files_path>$CH_DIR/user_files/</user_files_path>
  <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
  <users_config>$CH_DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <max_connections>1024</max_connections>
  <max_concurrent_queries>200</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
	cat >"$CH_DIR/users.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by tapline integration/scripts/clickhouse.sh. -->
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <!-- The query role's profile: reads only; readonly 2 still lets it set its
         per-query limits (docs/security.md). -->
    <tapline_reader><readonly>2</readonly><max_memory_usage>4000000000</max_memory_usage></tapline_reader>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <tapline_reader>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>tapline_reader</profile>
      <quota>default</quota>
    </tapline_reader>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
EOF
}

ch_ping() { curl -fsS --max-time 2 "http://127.0.0.1:$1/?query=SELECT%201" | grep -qx 1; }

ch_up() {
	mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas,log}
	local tcp http old=()
	[[ -f $CH_DIR/ports ]] && read -r -a old <"$CH_DIR/ports"
	if pid_alive "$CH_DIR/clickhouse.pid" && ((${#old[@]} == 2)) && ch_ping "${old[1]}"; then
		tcp=${old[0]} http=${old[1]}
		note "clickhouse already running on 127.0.0.1:$tcp (http :$http)"
	else
		stop_pidfile clickhouse "$CH_DIR/clickhouse.pid" 30
		tcp=$(pick_port "${old[0]:-}")
		http=$(pick_port "${old[1]:-}")
		echo "$tcp $http" >"$CH_DIR/ports"
		ch_write_config "$tcp" "$http"
		log "starting ClickHouse server on 127.0.0.1:$tcp (http :$http)"
		echo "---- start $(date -Is) tcp $tcp http $http" >>"$CH_DIR/log/stdout.log"
		daemonize "$CH_DIR/log/stdout.log" "$CH_DIR/clickhouse.pid" "$CH_BIN" --config-file="$CH_DIR/config.xml"
		wait_until 60 "ClickHouse on 127.0.0.1:$http" "$CH_DIR/log/clickhouse-server.err.log" "$CH_DIR/clickhouse.pid" ch_ping "$http"
	fi
	local version
	version=$(curl -fsS --max-time 5 "http://127.0.0.1:$http/?query=SELECT%20version()")
	note "clickhouse $version"
	{
		env_line TAPLINE_CLICKHOUSE_ADDR "127.0.0.1:$tcp"
		env_line TAPLINE_CLICKHOUSE_HTTP "127.0.0.1:$http"
		env_line TAPLINE_CLICKHOUSE_VERSION "$version"
		env_line TAPLINE_CLICKHOUSE_LOG "$CH_DIR/log/clickhouse-server.log"
	} >"$STATE/parts/clickhouse.env"
}

ch_down() {
	stop_pidfile clickhouse "$CH_DIR/clickhouse.pid" 30
}

ch_status() {
	if pid_alive "$CH_DIR/clickhouse.pid"; then
		local p=()
		read -r -a p <"$CH_DIR/ports"
		echo "clickhouse: running, pid $(pid_of "$CH_DIR/clickhouse.pid"), native 127.0.0.1:${p[0]}, http 127.0.0.1:${p[1]}, log $CH_DIR/log/"
	else
		echo "clickhouse: stopped"
	fi
}
