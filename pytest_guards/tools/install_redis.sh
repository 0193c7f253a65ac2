#!/usr/bin/env bash
# Make sure $TOOLS_BIN/redis-server exists (the Redis state backend's tests and replica scenarios run it).
# Run it through `fragrance-ai install-tools redis-server [--dir DIR]`.
#
# 1. already there and working: nothing to do;
# 2. redis-server on PATH: symlink it;
# 3. otherwise: `apt-get download redis-tools libjemalloc2 liblzf1` (Debian's packages; `apt-get update`
#    first if the download fails) into a temp dir and extract ONLY the server binary (Debian ships it as
#    redis-check-rdb; redis-server is a symlink to it) and the two libraries it links, into
#    $TOOLS_BIN/../lib/redis, behind a small wrapper script: no package is installed and no service starts.
# Idempotent. Exits non-zero with a message saying what is missing when none of this works.
set -euo pipefail

bindir="${TOOLS_BIN:?set TOOLS_BIN to the directory to install into (fragrance-ai install-tools does)}"
target="$bindir/redis-server"

say() { printf 'install_redis: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

if works "$target"; then
    exit 0
fi
mkdir -p "$bindir"
rm -f "$target"

found="$(PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$bindir" | paste -sd: -)" command -v redis-server || true)"
if [ -n "$found" ] && works "$found"; then
    ln -s "$found" "$target"
    say "linked $target -> $found"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "no redis-server on PATH and no apt-get to fetch Debian's 'redis-tools'; install redis-server (https://redis.io/download) and rerun"
command -v dpkg-deb >/dev/null 2>&1 || die "no redis-server on PATH and no dpkg-deb to unpack Debian's packages; install redis-server and rerun"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"

packages=(redis-tools libjemalloc2 liblzf1)
download() { (cd "$tmp" && apt-get download "${packages[@]}") >"$tmp/apt.log" 2>&1; }
if ! download; then
    say "apt-get download ${packages[*]} failed; running apt-get update and retrying"
    apt-get update >"$tmp/update.log" 2>&1 || say "apt-get update failed (not root?): $(tail -n 3 "$tmp/update.log")"
    download || die "cannot download Debian's ${packages[*]}: $(tail -n 5 "$tmp/apt.log")"
fi

mkdir -p "$tmp/x"
for deb in "$tmp"/*.deb; do
    dpkg-deb -x "$deb" "$tmp/x"
done
server="$tmp/x/usr/bin/redis-check-rdb"
[ -x "$server" ] || die "redis-tools has no usr/bin/redis-check-rdb (the server binary)"
libdir="$(cd "$bindir/.." && pwd)/lib/redis"
mkdir -p "$libdir"
install -m 0755 "$server" "$libdir/redis-server"
find "$tmp/x" \( -name 'libjemalloc.so*' -o -name 'liblzf.so*' \) -exec cp -P {} "$libdir/" \;
cat >"$target" <<WRAPPER
#!/bin/sh
# redis-server extracted from Debian's redis-tools by install_redis.sh, with the libraries it links
LD_LIBRARY_PATH="$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$libdir/redis-server" "\$@"
WRAPPER
chmod 0755 "$target"
works "$target" || die "extracted $target does not run: $("$target" --version 2>&1 | head -n 3)"
say "extracted $target: $("$target" --version 2>&1 | head -n 1)"
