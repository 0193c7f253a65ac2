#!/usr/bin/env bash
# Make sure $TOOLS_BIN/promtool exists (the monitoring tests and `promtool test rules` run it).
# Run it through `fragrance-ai install-tools promtool [--dir DIR]`.
#
# 1. already there and working: nothing to do;
# 2. promtool on PATH: symlink it;
# 3. otherwise: `apt-get download prometheus` (Debian's package; `apt-get update` first if the
#    download fails) into a temp dir and extract ONLY usr/bin/promtool: no package is installed and
#    no service starts.
# Idempotent. Exits non-zero with a message saying what is missing when none of this works.
set -euo pipefail

bindir="${TOOLS_BIN:?set TOOLS_BIN to the directory to install into (fragrance-ai install-tools does)}"
target="$bindir/promtool"

say() { printf 'install_promtool: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

if works "$target"; then
    exit 0
fi
mkdir -p "$bindir"
rm -f "$target"  # a dangling symlink or a broken binary from an earlier attempt

# a promtool on PATH other than our own (which is absent or broken, see above)
found="$(PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$bindir" | paste -sd: -)" command -v promtool || true)"
if [ -n "$found" ] && works "$found"; then
    ln -s "$found" "$target"
    say "linked $target -> $found"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "no promtool on PATH and no apt-get to fetch Debian's 'prometheus' package; install promtool (https://prometheus.io/download/) and rerun"
command -v dpkg-deb >/dev/null 2>&1 || die "no promtool on PATH and no dpkg-deb to unpack Debian's 'prometheus' package; install promtool and rerun"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"

download() { (cd "$tmp" && apt-get download prometheus) >"$tmp/apt.log" 2>&1; }
if ! download; then
    say "apt-get download prometheus failed; running apt-get update and retrying"
    apt-get update >"$tmp/update.log" 2>&1 || say "apt-get update failed (not root?): $(tail -n 3 "$tmp/update.log")"
    download || die "cannot download Debian's 'prometheus' package: $(tail -n 5 "$tmp/apt.log")"
fi

deb="$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n 1)"
[ -n "$deb" ] || die "apt-get download succeeded but left no prometheus_*.deb in $tmp"
mkdir -p "$tmp/x"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" ./usr/bin/promtool \
    || die "$(basename "$deb") has no usr/bin/promtool"
install -m 0755 "$tmp/x/usr/bin/promtool" "$target"
works "$target" || die "extracted $target does not run: $("$target" --version 2>&1 | head -n 3)"
say "extracted $target from $(basename "$deb"): $("$target" --version 2>&1 | head -n 1)"
