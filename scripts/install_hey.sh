#!/usr/bin/env bash
# Install hey (a compiled HTTP load generator, so the client is not the bottleneck) into .tools/bin for `make bench`.
# Needs Go; without it, the service load rows of `make bench` say hey is missing and are skipped.
set -euo pipefail
dest="${1:-.tools/bin}"
mkdir -p "$dest"
if [ -x "$dest/hey" ]; then exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "install_hey: go is not installed; the service load benchmark will be skipped" >&2
  exit 0
fi
GOBIN="$(cd "$dest" && pwd)" go install github.com/rakyll/hey@v0.1.4
