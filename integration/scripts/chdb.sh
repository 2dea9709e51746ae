# shellcheck shell=bash
# libchdb.so (embedded ClickHouse) for chdb-go, from the npm package
# @chdb/lib-linux-x64-gnu. Nothing runs; tests load the library.
# Sourced by integration/services.sh.

CHDB_NPM_PKG=@chdb/lib-linux-x64-gnu
CHDB_NPM_VERSION=26.7.3-stable.1
CHDB_HOME=$CACHE/chdb-$CHDB_NPM_VERSION

chdb_packages() {
	command -v npm >/dev/null || echo npm
}

chdb_up() {
	local lib=$CHDB_HOME/package/libchdb.so
	if [[ ! -f $CHDB_HOME/.complete ]]; then
		log "fetching $CHDB_NPM_PKG@$CHDB_NPM_VERSION (about 180 MB) into $CHDB_HOME"
		local t0 tgz
		t0=$(now_ms)
		rm -rf "$CHDB_HOME"
		mkdir -p "$CHDB_HOME"
		(cd "$CHDB_HOME" && npm pack --silent "$CHDB_NPM_PKG@$CHDB_NPM_VERSION") >"$CHDB_HOME/npm.log" 2>&1 ||
			die "npm pack $CHDB_NPM_PKG@$CHDB_NPM_VERSION failed; see $CHDB_HOME/npm.log"
		tgz=$(find "$CHDB_HOME" -maxdepth 1 -name '*.tgz' | head -n1)
		[[ -n $tgz ]] || die "npm pack left no tarball in $CHDB_HOME; see $CHDB_HOME/npm.log"
		note "extracting $(basename "$tgz")"
		tar -xzf "$tgz" -C "$CHDB_HOME" || die "could not extract $tgz"
		rm -f "$tgz"
		[[ -f $lib ]] || die "no libchdb.so in $CHDB_NPM_PKG@$CHDB_NPM_VERSION (looked at $lib)"
		touch "$CHDB_HOME/.complete"
		note "done in $((($(now_ms) - t0) / 1000))s"
	fi
	# sinks/clickhouse/chdb/libchdb dlopen()s CHDB_LIB_PATH as is: the file, not its directory.
	env_line CHDB_LIB_PATH "$lib" >"$STATE/parts/chdb.env"
}

chdb_down() { :; }

chdb_status() {
	if [[ -f $CHDB_HOME/.complete ]]; then
		echo "chdb: library at $CHDB_HOME/package/libchdb.so"
	else
		echo "chdb: not fetched"
	fi
}
