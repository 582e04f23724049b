#!/usr/bin/env bash
# Centrifugo, the peer the connect-storm benchmark measures Fleety against
# (`target/release/load storm --peer centrifugo`). Built once from the Go module proxy and cached;
# the load generator starts and configures it itself.
#
#   scripts/centrifugo.sh fetch     build centrifugo from the Go module proxy into the cache (once, a few minutes)
#   scripts/centrifugo.sh path      the binary (after fetch)
#
# Environment: FLEETY_CACHE (binary cache, default ~/.cache/fleety).
set -euo pipefail

VERSION=6.9.1
CACHE="${FLEETY_CACHE:-$HOME/.cache/fleety}"
BIN="$CACHE/centrifugo-$VERSION"

log() { printf 'centrifugo: %s\n' "$*" >&2; }

fetch() {
  if [ -x "$BIN" ]; then return 0; fi
  command -v go >/dev/null || { log "go is not installed"; exit 1; }
  log "building centrifugo $VERSION from the Go module proxy (once)"
  local gobin; gobin=$(mktemp -d)
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@v$VERSION"
  mkdir -p "$CACHE"
  mv "$gobin/centrifugo" "$BIN"
  rm -rf "$gobin"
}

case "${1:-}" in
  fetch) fetch ;;
  path) fetch; echo "$BIN" ;;
  *) echo "usage: $0 fetch|path" >&2; exit 2 ;;
esac
