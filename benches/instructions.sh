#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a measure of the request path's
# CPU work that does not move with the host's load, where wall-clock throughput on a shared
# 2-vCPU machine can swing by a third between identical runs. It counts user-space instructions
# only (not the kernel's socket and scheduler work, nor cache misses), so it shows whether a
# change to our code made a request cheaper, not how fast the server is.
#
#   benches/instructions.sh [get|post] [requests per second]   (defaults: get 200)
#
# It builds the release server and the load generator, starts the server under callgrind on a
# fresh data directory, drives it with `target/release/load http` at a low fixed rate
# over 8 connections, and counts instructions over a 12-second window after a warm-up. Requests
# in the window come from the server's own `fleety_http_requests_total`. Posts at this rate
# are not batched, so the store threads' figure is far above what a post costs under load; the
# request threads' figure is the one to compare between builds.
set -euo pipefail
cd "$(dirname "$0")/.."

mix=${1:-get}
rate=${2:-200}
case $mix in get | post) ;; *) echo "usage: $0 [get|post] [rate]" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }

cargo build --release --locked --workspace --bins

port=28181
dir=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
env FLEETY_LISTEN=127.0.0.1:$port FLEETY_DATA_DIR="$dir" FLEETY_LOG=warn \
    FLEETY_PUBLIC_RATE_LIMIT=0 FLEETY_SESSION_RATE_LIMIT=0 FLEETY_LLM_PROVIDER=offline \
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.out" \
    target/release/fleety >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 300); do
    curl -sf "127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
done
curl -sf "127.0.0.1:$port/healthz" >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

method=$([ "$mix" = get ] && echo GET || echo POST)
answered() {
    curl -s "127.0.0.1:$port/metrics" | awk -v m="$method" '
        /^fleety_http_requests_total/ && $0 ~ "method=\"" m "\"" && /route="\/v1\/tickets/ { s += $NF }
        END { print s + 0 }'
}

target/release/load http --mix "$mix" --rate "$rate" --connections 8 \
    --tickets 20 --messages 20 --duration-secs 24 --url "127.0.0.1:$port" --pid "$server" \
    --admin-key "$(cat "$dir/demo-admin-key")" --out "$dir/load" >"$dir/load.log" 2>&1 &
load=$!
sleep 8
before=$(answered)
callgrind_control -z "$server" >/dev/null
sleep 12
callgrind_control -d "$server" >/dev/null
after=$(answered)
wait "$load" || { cat "$dir/load.log" >&2; exit 1; }

requests=$((after - before))
[ "$requests" -gt 0 ] || { echo "no requests were answered in the window" >&2; exit 1; }
total=0
request_threads=0
for f in "$dir"/cg.out.1-*; do
    n=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
    total=$((total + n))
    # The request runtime's workers are the threads that ran tokio's scheduler loop.
    if grep -q "multi_thread::worker::run" "$f"; then request_threads=$((request_threads + n)); fi
done
echo "$mix at $rate/s: $requests requests in the window"
echo "instructions per request: request threads $((request_threads / requests)), all threads $((total / requests))"
