#!/usr/bin/env bash
# The web front ends (web/): their build and their browser tests.
#
#   scripts/web.sh build    install the pinned npm packages, build web/dist (the server embeds
#                           it), and fail if a size budget is exceeded
#   scripts/web.sh check    typecheck, build, and fail if web/dist differs from the committed
#                           build (it must be reproducible, and committed)
#   scripts/web.sh test     the browser tests in headless Chromium against target/debug/fleety
#                           (or FLEETY_BIN); installs Debian's chromium first if it is missing.
#                           The visitor-email tests read what a real SMTP server received: the
#                           one FLEETY_TEST_SMTP / FLEETY_TEST_SMTP_DIR name (scripts/test.sh
#                           sets them), else one started here (scripts/smtp.sh) and stopped after.
#
# Node and npm come with the machine; Chromium comes from Debian's packages (never a browser
# download by a test tool). Screenshots and other artefacts go to target/e2e/.
set -euo pipefail
cd "$(dirname "$0")/../web"

log() { printf 'web: %s\n' "$*" >&2; }

install() {
  command -v npm >/dev/null || { log "npm is not installed"; exit 1; }
  # The lock file pins every package; `ci` installs exactly it.
  npm ci --no-audit --no-fund --loglevel=error
}

# Not named `chromium`: `command -v chromium` would then find this function, not the browser.
ensure_chromium() {
  if [ -x "$(type -P chromium)" ]; then return 0; fi
  log "installing Debian's chromium (once)"
  if [ "$(id -u)" != 0 ]; then
    log "chromium is missing and installing it needs root: apt-get install chromium"
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

case "${1:-}" in
  build)
    install
    node build.mjs
    ;;
  check)
    install
    npx tsc --noEmit -p .
    node build.mjs --check
    ;;
  test)
    install
    ensure_chromium
    export CHROMIUM="${CHROMIUM:-$(type -P chromium)}"
    if [ -z "${FLEETY_TEST_SMTP:-}" ]; then
      export SMTP_DIR SMTP_PORT
      SMTP_DIR=$(mktemp -d /tmp/fleety-smtp.XXXXXX)
      SMTP_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      trap 'bash ../scripts/smtp.sh stop || true; rm -rf "$SMTP_DIR"' EXIT
      bash ../scripts/smtp.sh start
      eval "$(bash ../scripts/smtp.sh env | sed 's/^/export /')"
    fi
    node --test e2e/
    ;;
  *)
    echo "usage: $0 build|check|test" >&2
    exit 2
    ;;
esac
