# shellcheck shell=bash
# Ory Hydra v2.3.0, a certified OpenID provider, for the tests of token
# verification and the console's login against a real provider. Built from source
# in its own tools module (integration/tools/hydra, so its dependencies stay out
# of tapline's go.mod), once, niced, and cached. Nothing runs here: each test
# starts its own Hydra (in-memory DSN) with its own login and consent handler.
# Sourced by integration/services.sh.

HYDRA_VERSION=v2.3.0
HYDRA_HOME=$CACHE/hydra-$HYDRA_VERSION

hydra_packages() {
	# In-memory DSN is SQLite's, which Hydra has only when built with cgo.
	command -v gcc >/dev/null || echo gcc
}

hydra_up() {
	local bin=$HYDRA_HOME/hydra
	if [[ ! -x $bin ]]; then
		log "building Ory Hydra $HYDRA_VERSION into $HYDRA_HOME (several minutes, once)"
		local t0
		t0=$(now_ms)
		mkdir -p "$HYDRA_HOME"
		(cd "$REPO/integration/tools/hydra" && CGO_ENABLED=1 nice -n 19 go build -tags sqlite,sqlite_omit_load_extension -o "$bin.tmp" github.com/ory/hydra/v2) >"$HYDRA_HOME/build.log" 2>&1 ||
			die "building Hydra failed; see $HYDRA_HOME/build.log"
		mv "$bin.tmp" "$bin"
		note "done in $((($(now_ms) - t0) / 1000))s"
	fi
	env_line TAPLINE_HYDRA "$bin" >"$STATE/parts/hydra.env"
}

hydra_down() { :; }

hydra_status() {
	if [[ -x $HYDRA_HOME/hydra ]]; then
		echo "hydra: $HYDRA_HOME/hydra"
	else
		echo "hydra: not built"
	fi
}
