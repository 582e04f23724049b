#!/usr/bin/env bash
# A real SMTP server for the email tests: aiosmtpd (PyPI, pinned, in a cached virtualenv)
# running tests/smtp/sink.py, which accepts mail from a client signed in as fleety / the
# password below and writes each message to $SMTP_DIR as <n>.eml.
#
#   scripts/smtp.sh start    start it in the background (installs aiosmtpd once)
#   scripts/smtp.sh stop
#   scripts/smtp.sh status   exit 0 if it is answering
#   scripts/smtp.sh env      the variables the API tests read: FLEETY_TEST_SMTP (the server's
#                            smtp:// URL) and FLEETY_TEST_SMTP_DIR (where messages land)
#
# SMTP_PORT (2525) and SMTP_DIR (/tmp/fleety-smtp) choose where.
set -euo pipefail
cd "$(dirname "$0")/.."

AIOSMTPD_VERSION=1.4.6
CACHE="${FLEETY_CACHE:-$HOME/.cache/fleety}"
VENV="$CACHE/smtp-aiosmtpd$AIOSMTPD_VERSION"
PORT="${SMTP_PORT:-2525}"
DIR="${SMTP_DIR:-/tmp/fleety-smtp}"
USER_NAME=fleety
PASSWORD=sink-password
PIDFILE="$DIR.pid"

log() { printf 'smtp: %s\n' "$*" >&2; }

answering() {
  python3 - "$PORT" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    ok = s.recv(512).startswith(b"220")
    s.close()
except OSError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

install() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    log "installing aiosmtpd $AIOSMTPD_VERSION into $VENV (once)"
    rm -rf "$VENV.tmp"
    python3 -m venv "$VENV.tmp"
    "$VENV.tmp/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
    rm -rf "$VENV"
    mv "$VENV.tmp" "$VENV"
    # A venv's scripts name their interpreter by path: rewrite them for the final place.
    grep -rl "$VENV.tmp" "$VENV/bin" | xargs -r sed -i "s#$VENV.tmp#$VENV#g"
  fi
}

case "${1:-}" in
  start)
    if answering; then
      log "already answering on 127.0.0.1:$PORT"
      exit 0
    fi
    install
    mkdir -p "$DIR"
    nohup "$VENV/bin/python" tests/smtp/sink.py 127.0.0.1 "$PORT" "$DIR" "$USER_NAME" "$PASSWORD" \
      > "$DIR.log" 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 50); do
      if answering; then
        log "answering on 127.0.0.1:$PORT, messages in $DIR"
        exit 0
      fi
      sleep 0.2
    done
    cat "$DIR.log" >&2
    log "did not start"
    exit 1
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      kill "$(cat "$PIDFILE")" 2>/dev/null || true
      rm -f "$PIDFILE" "$DIR.log"
    fi
    ;;
  status)
    answering
    ;;
  env)
    echo "FLEETY_TEST_SMTP='smtp://$USER_NAME:$PASSWORD@127.0.0.1:$PORT?tls=none'"
    echo "FLEETY_TEST_SMTP_DIR='$DIR'"
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
