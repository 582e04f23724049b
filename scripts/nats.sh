#!/usr/bin/env bash
# NATS servers with JetStream for the cluster tests and benchmarks: three servers clustered on
# loopback, each with its own data directory, storing with `sync_interval: always` (an
# acknowledged write is on disk, not in a page cache a power cut would lose).
#
#   scripts/nats.sh fetch            build nats-server from the Go module proxy into the cache (once)
#   scripts/nats.sh start [N]        start N clustered servers (default 3) and wait until each answers
#   scripts/nats.sh stop             stop every server this script started
#   scripts/nats.sh kill I           SIGKILL server I (1-based): for failure tests
#   scripts/nats.sh urls             the client URLs, comma separated
#   scripts/nats.sh path             the nats-server binary
#
# Environment: FLEETY_CACHE (binary cache, default ~/.cache/fleety), NATS_DIR (data, logs and
# pid files, default /tmp/fleety-nats), NATS_PORT (first client port, default 4322; server I
# listens on NATS_PORT+I-1 and routes on NATS_PORT+100+I-1).
set -euo pipefail

VERSION=2.15.3
CACHE="${FLEETY_CACHE:-$HOME/.cache/fleety}"
BIN="$CACHE/nats-server-$VERSION"
DIR="${NATS_DIR:-/tmp/fleety-nats}"
PORT="${NATS_PORT:-4322}"

log() { printf 'nats: %s\n' "$*" >&2; }

fetch() {
  if [ -x "$BIN" ]; then return 0; fi
  command -v go >/dev/null || { log "go is not installed"; exit 1; }
  log "building nats-server $VERSION from the Go module proxy (once, about 90 s)"
  local gobin; gobin=$(mktemp -d)
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@v$VERSION"
  mkdir -p "$CACHE"
  mv "$gobin/nats-server" "$BIN"
  rm -rf "$gobin"
}

answers() {
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  local line
  line=$(timeout 2 head -c 4 <&3) || true
  exec 3>&- 3<&-
  [ "$line" = "INFO" ]
}

config() {
  local i="$1" n="$2" routes="" j
  for j in $(seq 1 "$n"); do
    [ "$j" = "$i" ] && continue
    routes="$routes    nats://127.0.0.1:$((PORT + 100 + j - 1))
"
  done
  cat <<EOF
server_name: fleety-nats-$i
listen: 127.0.0.1:$((PORT + i - 1))
jetstream {
  store_dir: "$DIR/$i"
  sync_interval: always
  max_memory_store: 64MB
  max_file_store: 2GB
}
EOF
  if [ "$n" -gt 1 ]; then
    cat <<EOF
cluster {
  name: fleety
  listen: 127.0.0.1:$((PORT + 100 + i - 1))
  routes: [
$routes  ]
}
EOF
  fi
}

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

start() {
  local n="${1:-3}" i
  fetch
  mkdir -p "$DIR"
  for i in $(seq 1 "$n"); do
    if running "$i"; then continue; fi
    mkdir -p "$DIR/$i"
    config "$i" "$n" > "$DIR/$i.conf"
    "$BIN" -c "$DIR/$i.conf" > "$DIR/$i.log" 2>&1 &
    echo $! > "$DIR/$i.pid"
  done
  for i in $(seq 1 "$n"); do
    local tries=0
    until answers $((PORT + i - 1)); do
      tries=$((tries + 1))
      if [ $tries -gt 100 ]; then log "server $i did not answer; see $DIR/$i.log"; exit 1; fi
      sleep 0.1
    done
  done
  echo "$n" > "$DIR/count"
  log "$n server(s) ready: $(urls)"
}

stop() {
  local f
  for f in "$DIR"/*.pid; do
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  log "stopped"
}

urls() {
  local n i out=""
  n=$(cat "$DIR/count" 2>/dev/null || echo 3)
  for i in $(seq 1 "$n"); do out="$out${out:+,}nats://127.0.0.1:$((PORT + i - 1))"; done
  echo "$out"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:-3}" ;;
  stop) stop ;;
  kill) kill -9 "$(cat "$DIR/$2.pid")"; rm -f "$DIR/$2.pid" ;;
  urls) urls ;;
  path) fetch; echo "$BIN" ;;
  *) echo "usage: $0 fetch|start [N]|stop|kill I|urls|path" >&2; exit 2 ;;
esac
