#!/usr/bin/env bash
# A local single-node Apache Cassandra 5.0 for the CQL tests (ScyllaDB speaks the same CQL and
# cannot be installed here). Jars come from Maven Central and are cached between runs.
#
#   scripts/cassandra.sh fetch    download the jars into the cache (once)
#   scripts/cassandra.sh start    start the node and wait until CQL answers
#   scripts/cassandra.sh stop     stop the node (it finishes writing what it has)
#   scripts/cassandra.sh status   exit 0 when CQL answers
#
# Environment: FLEETY_CACHE (jar cache, default ~/.cache/fleety), CASSANDRA_DIR (data and logs,
# default /tmp/fleety-cassandra), CASSANDRA_CQL_PORT (default 9042), CASSANDRA_STORAGE_PORT (7000).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=5.0.8
CACHE="${FLEETY_CACHE:-$HOME/.cache/fleety}"
LIB="$CACHE/cassandra-$VERSION/lib"
DIR="${CASSANDRA_DIR:-/tmp/fleety-cassandra}"
CQL_PORT="${CASSANDRA_CQL_PORT:-9042}"
STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
PIDFILE="$DIR/cassandra.pid"

log() { printf 'cassandra: %s\n' "$*" >&2; }

cql_answers() {
  # A CQL OPTIONS frame (protocol v4); a live node answers with a SUPPORTED frame (opcode 0x06).
  { exec 3<>"/dev/tcp/127.0.0.1/$CQL_PORT"; } 2>/dev/null || return 1
  printf '\x04\x00\x00\x01\x05\x00\x00\x00\x00' >&3
  local reply
  reply=$(timeout 2 head -c 5 <&3 | od -An -tx1 | tr -d ' \n') || true
  exec 3>&- 3<&-
  [ "${reply:8:2}" = "06" ]
}

fetch() {
  if [ -f "$LIB/.complete" ]; then return 0; fi
  command -v java >/dev/null || { log "java is not installed"; exit 1; }
  command -v mvn >/dev/null || { log "mvn is not installed"; exit 1; }
  log "fetching Cassandra $VERSION jars into $LIB (once)"
  mkdir -p "$LIB"
  # maven-dependency-plugin is pinned: Maven 3.8 would otherwise pick an old one.
  mvn -B -q -f "$HERE/cassandra/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DoutputDirectory="$LIB" -DincludeScope=runtime
  touch "$LIB/.complete"
}

# Our node is running: the pid file names a live Cassandra of this data directory (a stale pid
# file whose number was reused by another process does not count).
running() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "CassandraDaemon" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/cassandra.yaml"
}

# Stops the node we started, if any: politely, then by force.
kill_node() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

start() {
  fetch
  if running && cql_answers; then log "already running on port $CQL_PORT"; return 0; fi
  if running; then log "our node is starting already; waiting"; else
  if cql_answers; then log "another CQL server answers on port $CQL_PORT; stop it or set CASSANDRA_CQL_PORT"; exit 1; fi
  mkdir -p "$DIR/logs"
  sed -e "s#@DIR@#$DIR#g" -e "s#@CQL_PORT@#$CQL_PORT#g" -e "s#@STORAGE_PORT@#$STORAGE_PORT#g" \
    "$HERE/cassandra/cassandra.yaml.tmpl" > "$DIR/cassandra.yaml"
  local jamm
  jamm=$(ls "$LIB"/jamm-*.jar | head -1)
  # The --add-exports/--add-opens list is what Cassandra's jvm17-server.options asks for.
  nohup java -Xms768m -Xmx768m -Xss256k -XX:+UseG1GC \
    -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem \
    -Djava.net.preferIPv4Stack=true -Dchronicle.analytics.disable=true \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    --add-opens java.base/java.nio=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true \
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
    -javaagent:"$jamm" \
    -Dcassandra-foreground=yes \
    -Dcassandra.config="file://$DIR/cassandra.yaml" \
    -Dcassandra.storagedir="$DIR" -Dcassandra.logdir="$DIR/logs" \
    -Dlogback.configurationFile="file://$HERE/cassandra/logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=1000 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    -Dcassandra.unsafesystem=true \
    -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon \
    > "$DIR/logs/stdout.log" 2>&1 &
  echo $! > "$PIDFILE"
  fi
  local pid; pid=$(cat "$PIDFILE")
  log "starting (pid $pid), waiting for CQL on 127.0.0.1:$CQL_PORT"
  for _ in $(seq 1 180); do
    if cql_answers; then log "ready"; return 0; fi
    if ! running; then log "the node exited; last log lines:"; tail -30 "$DIR/logs/stdout.log" "$DIR/logs/system.log" 2>/dev/null >&2; rm -f "$PIDFILE"; exit 1; fi
    sleep 1
  done
  log "CQL did not answer within 180 s; stopping the node"; tail -30 "$DIR/logs/system.log" 2>/dev/null >&2
  kill_node "$pid"
  exit 1
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return 0; fi
  kill_node "$(cat "$PIDFILE")"
  log "stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) cql_answers ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
