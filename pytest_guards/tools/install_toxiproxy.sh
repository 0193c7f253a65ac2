#!/usr/bin/env bash
# Install the Toxiproxy server the chaos tests drive into $TOOLS_BIN/toxiproxy-server.
#
# Run it through `fragrance-ai install-tools [--dir DIR]` (TOOLS_BIN defaults to the user tools
# directory the harness searches; `make tools` passes .tools/bin).
# Idempotent: an existing binary is reused (reinstalled only when this script installed another
# version). Needs Go (https://go.dev/dl/) and access to the Go module proxy. Override the version
# with TOXIPROXY_VERSION=v2.x.y. The harness finds the binary there or on PATH, or use
# --toxiproxy-url / $TOXIPROXY_URL to talk to a server you already run.
set -euo pipefail

VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
BIN="${TOOLS_BIN:?set TOOLS_BIN to the directory to install into (fragrance-ai install-tools does)}"
TARGET="$BIN/toxiproxy-server"
STAMP="$BIN/.toxiproxy-server.version"

# reuse what is there: a binary this script installed at this version, or one put there by hand
# (no stamp); only a stamp naming another version means reinstall
if [[ -x "$TARGET" ]] && { [[ ! -f "$STAMP" ]] || [[ "$(cat "$STAMP")" == "$VERSION" ]]; }; then
    echo "toxiproxy-server already installed: $TARGET ($(cat "$STAMP" 2>/dev/null || echo 'installed by hand'))"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<EOF
install_toxiproxy.sh: cannot install toxiproxy-server $VERSION: the 'go' command is not on PATH.
  Install Go (https://go.dev/dl/) and run this script again, or
  download a release binary from https://github.com/Shopify/toxiproxy/releases to $TARGET, or
  run a server yourself (docker run --network host ghcr.io/shopify/toxiproxy:${VERSION#v}: the
  test proxies listen on 127.0.0.1, so it must share the host's network) and point the tests at it: pytest --toxiproxy-url http://127.0.0.1:8474 (or TOXIPROXY_URL=...).
EOF
    exit 1
fi

mkdir -p "$BIN"
echo "installing toxiproxy-server $VERSION into $BIN (go install) ..."
# `go install .../cmd/server` names the binary after its package directory: `server`
GOBIN="$BIN" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"
if [[ ! -x "$BIN/server" ]]; then
    echo "install_toxiproxy.sh: go install finished but $BIN/server was not built" >&2
    exit 1
fi
mv -f "$BIN/server" "$TARGET"
echo "$VERSION" >"$STAMP"
echo "installed: $TARGET"
