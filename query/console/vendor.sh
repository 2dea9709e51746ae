#!/usr/bin/env bash
# query/console/vendor.sh — refresh the vendored terminal player from npm.
# Run at development time only; the built files are committed and embedded, so
# neither the build nor the running server needs Node or the network.
set -euo pipefail
VERSION=${1:-3.18.0}
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/assets/vendor/asciinema-player
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "asciinema-player@$VERSION" >/dev/null && tar -xzf asciinema-player-*.tgz)
cp "$TMP/package/dist/bundle/asciinema-player.min.js" "$TMP/package/dist/bundle/asciinema-player.css" "$TMP/package/LICENSE" "$DIR/"
echo "asciinema-player $VERSION (npm), dist/bundle files, Apache-2.0 (LICENSE). Rebuild: query/console/vendor.sh" >"$DIR/VERSION"
echo "vendored asciinema-player $VERSION into $DIR"
