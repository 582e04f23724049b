#!/usr/bin/env bash
# The API against its own description, with the tool our users would use: schemathesis (from
# PyPI, pinned, installed once into a cached virtualenv) runs every check, on positive and
# negative data, in every phase including the stateful one that follows the description's
# links, against a live server on the embedded store.
#
#   scripts/schemathesis.sh quick   the default rate limits, a short run
#   scripts/schemathesis.sh long    rate limits off, at least MIN_CASES test cases
#
# The server is target/debug/fleety (or FLEETY_BIN); the run's settings are in
# tests/openapi/schemathesis.toml. Fails on any failure, and (long) on fewer cases than asked.
# Reports go to target/schemathesis/<mode>/.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
CACHE="${FLEETY_CACHE:-$HOME/.cache/fleety}"
VENV="$CACHE/schemathesis-$VERSION"
MODE="${1:-quick}"
MIN_CASES="${MIN_CASES:-5000}"
BIN="${FLEETY_BIN:-target/debug/fleety}"

log() { printf 'schemathesis: %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/st" ]; then
  log "installing schemathesis $VERSION into $VENV (once)"
  python3 -m venv "$VENV.tmp"
  "$VENV.tmp/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  # A venv's scripts name their interpreter by path: rewrite them for the final place.
  grep -rl "$VENV.tmp" "$VENV/bin" | xargs sed -i "s#$VENV.tmp#$VENV#g"
fi

DATA=$(mktemp -d /tmp/fleety-schemathesis.XXXXXX)
REPORT="target/schemathesis/$MODE"
rm -rf "$REPORT"
mkdir -p "$REPORT"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

export ST_FLEETY_OPERATOR_TOKEN="st-operator-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
settings=(
  FLEETY_DATA_DIR="$DATA"
  FLEETY_LISTEN=127.0.0.1:0
  FLEETY_OPERATOR_TOKEN="$ST_FLEETY_OPERATOR_TOKEN"
  FLEETY_LOG=warn
)
case "$MODE" in
  quick)
    examples=10
    phases=examples,coverage,fuzzing,stateful
    ;;
  long)
    # Rate limits and quotas off: every request reaches what it tests.
    settings+=(
      FLEETY_PUBLIC_RATE_LIMIT=0
      FLEETY_SESSION_RATE_LIMIT=0
      FLEETY_CHAT_SESSION_REQUESTS_PER_MINUTE=0
      FLEETY_CHAT_PROJECT_REQUESTS_PER_MINUTE=0
      FLEETY_CHAT_SESSION_TOKEN_BUDGET=0
      FLEETY_CHAT_PROJECT_TOKENS_PER_HOUR=0
    )
    examples=150
    phases=examples,coverage,fuzzing,stateful
    ;;
  *)
    echo "usage: $0 quick|long" >&2
    exit 2
    ;;
esac

# The log exists before the server does: the loop below reads it at once. The server refuses
# FLEETY_* names that are not settings (this script's FLEETY_BIN, the test suite's
# FLEETY_TEST_*), so it starts with none but the run's own.
: > "$DATA/server.log"
# shellcheck disable=SC2046 # one -u per name, split on purpose
env $(compgen -e | sed -n 's/^FLEETY_.*/-u &/p') "${settings[@]}" "$BIN" > "$DATA/server.log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^Fleety is listening on \(http[^ ]*\).*/\1/p' "$DATA/server.log" | head -1)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$DATA/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { log "the server did not start"; cat "$DATA/server.log" >&2; exit 1; }
export ST_FLEETY_PROJECT=demo
ST_FLEETY_ADMIN_KEY=$(cat "$DATA/demo-admin-key")
export ST_FLEETY_ADMIN_KEY
log "$MODE run against $url"

status=0
"$VENV/bin/st" --config-file tests/openapi/schemathesis.toml run "$url/v1/openapi.json" \
  --checks all \
  --mode all \
  --phases "$phases" \
  --max-examples "$examples" \
  --seed "${SEED:-$RANDOM}" \
  --workers 1 \
  --request-timeout 20 \
  --report junit,ndjson \
  --report-dir "$REPORT" \
  --warnings off || status=$?
cp "$DATA/server.log" "$REPORT/server.log"
if [ "$status" -ne 0 ]; then
  log "failed (exit $status); the server's log is in $REPORT/server.log"
  exit "$status"
fi

cases=$("$VENV/bin/python" - "$REPORT" <<'PY'
import glob, json, sys
total = 0
for path in glob.glob(sys.argv[1] + "/*.ndjson"):
    for line in open(path):
        event = json.loads(line)
        for kind, body in event.items():
            if kind == "ScenarioFinished":
                total += len((body.get("recorder") or {}).get("cases") or {})
print(total)
PY
)
log "$cases test cases, no failures"
if [ "$MODE" = long ] && [ "$cases" -lt "$MIN_CASES" ]; then
  log "only $cases test cases; the long run must make at least $MIN_CASES"
  exit 1
fi
