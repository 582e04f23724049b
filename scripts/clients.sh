#!/usr/bin/env bash
# Clients generated from the API's own description, as our users would make them, against a
# live server on the embedded store (target/debug/fleety, or FLEETY_BIN; this builds nothing).
#
#   scripts/clients.sh          fetch /v1/openapi.json from the server, then
#                                 TypeScript: openapi-typescript + openapi-fetch (web/, pinned in
#                                   its package-lock.json): fail if web/src/shared/api-types.ts is
#                                   not what the document generates; type-check the journey
#                                   web/clients/journey.ts (tsc, strict), bundle it, run it;
#                                 Python: openapi-python-client (PyPI, pinned, in a cached
#                                   virtualenv) generates a package into a temporary directory;
#                                   mypy --strict checks tests/openapi/clients/journey.py against
#                                   it, and the journey runs.
#   scripts/clients.sh types    only rewrite web/src/shared/api-types.ts from the served document
#
# Each journey inits a session, opens a ticket, posts a message, marks it read, reads the
# ticket back and streams a chat answer (the offline assistant: no network).
set -euo pipefail
cd "$(dirname "$0")/.."

PY_CLIENT_VERSION=0.29.1
MYPY_VERSION=2.4.1
# The generated package's own dependencies, pinned too: they type its code.
HTTPX_VERSION=0.28.1
ATTRS_VERSION=26.1.0
CACHE="${FLEETY_CACHE:-$HOME/.cache/fleety}"
VENV="$CACHE/clients-opc$PY_CLIENT_VERSION-mypy$MYPY_VERSION-httpx$HTTPX_VERSION-attrs$ATTRS_VERSION"
BIN="${FLEETY_BIN:-target/debug/fleety}"
MODE="${1:-check}"
TYPES=web/src/shared/api-types.ts

log() { printf 'clients: %s\n' "$*" >&2; }

case "$MODE" in
  check | types) ;;
  *)
    echo "usage: $0 [types]" >&2
    exit 2
    ;;
esac
[ -x "$BIN" ] || { log "$BIN is missing: cargo build --bin fleety"; exit 1; }

(cd web && npm ci --no-audit --no-fund --loglevel=error)

if [ "$MODE" = check ] && [ ! -x "$VENV/bin/openapi-python-client" ]; then
  log "installing openapi-python-client $PY_CLIENT_VERSION and mypy $MYPY_VERSION into $VENV (once)"
  python3 -m venv "$VENV.tmp"
  "$VENV.tmp/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-python-client==$PY_CLIENT_VERSION" "mypy==$MYPY_VERSION" \
    "httpx==$HTTPX_VERSION" "attrs==$ATTRS_VERSION"
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  # A venv's scripts name their interpreter by path: rewrite them for the final place.
  grep -rl "$VENV.tmp" "$VENV/bin" | xargs sed -i "s#$VENV.tmp#$VENV#g"
fi

ROOT=$(mktemp -d /tmp/fleety-clients.XXXXXX)
DATA="$ROOT/data"
WORK="$ROOT/work"
mkdir -p "$DATA" "$WORK"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$ROOT"
}
trap cleanup EXIT

# The two journeys make ten public ticket requests from one address within a minute, the
# default per-IP limit: the limit is not what they test. The server refuses
# FLEETY_* names that are not settings (this script's FLEETY_BIN, the test suite's
# FLEETY_TEST_*), so it starts with none but its own.
# The log exists before the server does: the loop below reads it at once.
: > "$ROOT/server.log"
# shellcheck disable=SC2046 # one -u per name, split on purpose
env $(compgen -e | sed -n 's/^FLEETY_.*/-u &/p') \
  FLEETY_DATA_DIR="$DATA" \
  FLEETY_LISTEN=127.0.0.1:0 \
  FLEETY_PUBLIC_RATE_LIMIT=0 \
  FLEETY_LOG=warn \
  "$BIN" > "$ROOT/server.log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^Fleety is listening on \(http[^ ]*\).*/\1/p' "$ROOT/server.log" | head -1)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$ROOT/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { log "the server did not start"; cat "$ROOT/server.log" >&2; exit 1; }
[ -s "$DATA/demo-admin-key" ] || { log "the demo project was not made"; exit 1; }

DOC="$WORK/openapi.json"
curl -fsS "$url/v1/openapi.json" -o "$DOC"

failed() {
  log "$1"
  log "the server's log:"
  tail -n 40 "$ROOT/server.log" >&2
  exit 1
}

# --- TypeScript -----------------------------------------------------------------------------
# `type: object` without properties is any object (JSON Schema); openapi-typescript's default
# would make it an object with no keys at all.
generate_types() {
  (cd web && npx --no-install openapi-typescript "$DOC" --empty-objects-unknown -o "$1" >/dev/null)
}

if [ "$MODE" = types ]; then
  generate_types "$PWD/$TYPES"
  log "wrote $TYPES from $url/v1/openapi.json"
  exit 0
fi

log "TypeScript: openapi-typescript $(cd web && npx --no-install openapi-typescript --version | tail -1), openapi-fetch $(node -p 'require("./web/node_modules/openapi-fetch/package.json").version')"
generate_types "$WORK/api-types.ts"
if ! diff -u "$TYPES" "$WORK/api-types.ts" > "$WORK/api-types.diff"; then
  head -n 60 "$WORK/api-types.diff" >&2
  log "$TYPES is not what the served document generates: run scripts/clients.sh types, rebuild (scripts/web.sh build) and commit both"
  exit 1
fi
log "$TYPES is up to date"
(cd web && npx --no-install tsc --noEmit -p clients)
(cd web && npx --no-install esbuild clients/journey.ts --bundle --platform=node --format=esm \
  --target=node20 --log-level=warning --outfile="$WORK/journey.mjs")
node "$WORK/journey.mjs" "$url" || failed "the TypeScript journey failed"

# --- Python ---------------------------------------------------------------------------------
log "Python: openapi-python-client $PY_CLIENT_VERSION, mypy $MYPY_VERSION"
export PYTHONDONTWRITEBYTECODE=1
"$VENV/bin/openapi-python-client" generate --path "$DOC" --meta none \
  --config tests/openapi/clients/openapi-python-client.yaml \
  --output-path "$WORK/python/fleety_client" > "$WORK/python-client.log" 2>&1 || {
  cat "$WORK/python-client.log" >&2
  failed "openapi-python-client could not generate a client"
}
# The generator warns about what it could not turn into code; the document must give it
# nothing to warn about.
if grep -qE '^(Unable to|Cannot|Could not|WARNING)' "$WORK/python-client.log"; then
  cat "$WORK/python-client.log" >&2
  failed "openapi-python-client warned about the document"
fi
MYPYPATH="$WORK/python" "$VENV/bin/mypy" --strict --cache-dir "$VENV/mypy-cache" \
  tests/openapi/clients/journey.py
PYTHONPATH="$WORK/python" "$VENV/bin/python" tests/openapi/clients/journey.py "$url" \
  || failed "the Python journey failed"

log "both generated clients type-check and pass their journeys"
