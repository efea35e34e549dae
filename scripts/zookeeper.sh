#!/usr/bin/env bash
# Private ZooKeeper servers for tests and labs: each in its own DIR (config, data, log, pid), on its
# own port, never the system service. Runs Debian's server (package `zookeeper`, installed by
# scripts/ensure-deps.sh) straight from its jars.
#
#   scripts/zookeeper.sh start DIR PORT [ADDR]               one standalone server
#   scripts/zookeeper.sh start DIR PORT [ADDR] --ensemble ID SERVERS
#        one server of an ensemble; SERVERS is ADDR:PEERPORT:ELECTIONPORT,... in id order (1, 2...)
#   scripts/zookeeper.sh stop DIR                            stops it (SIGTERM, then SIGKILL)
#   scripts/zookeeper.sh status DIR PORT [ADDR]              prints the server's mode, fails if not serving
#
# `start` returns once the server answers on PORT (an ensemble member: once it listens; it serves
# when a quorum is up). ADDR defaults to 127.0.0.1. Environment: ZK_TICK_MS (default 500: sessions
# from 1 s to 60 s), ZK_START_TIMEOUT_SEC (default 60).
set -euo pipefail

die() { echo "zookeeper.sh: $*" >&2; exit 1; }
jars=/usr/share/java/zookeeper.jar
[ -e /usr/share/java/slf4j-simple.jar ] && jars="$jars:/usr/share/java/slf4j-simple.jar"

# Sends a four-letter command; prints the answer (empty when nobody answers).
four() {
  local addr=$1 port=$2 word=$3
  (exec 3<>"/dev/tcp/$addr/$port" && printf '%s' "$word" >&3 && timeout 2 cat <&3) 2>/dev/null || true
}

pid_of() {
  local dir=$1
  [ -s "$dir/zookeeper.pid" ] || return 1
  local pid
  pid=$(cat "$dir/zookeeper.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

start() {
  [ $# -ge 2 ] || die "usage: start DIR PORT [ADDR] [--ensemble ID SERVERS]"
  local dir=$1 port=$2 addr=127.0.0.1 id="" servers=""
  shift 2
  if [ $# -gt 0 ] && [ "$1" != "--ensemble" ]; then addr=$1; shift; fi
  if [ $# -gt 0 ]; then
    [ "$1" = "--ensemble" ] && [ $# -eq 3 ] || die "usage: start DIR PORT [ADDR] --ensemble ID SERVERS"
    id=$2 servers=$3
  fi
  [[ "$port" =~ ^[0-9]+$ ]] || die "invalid port '$port'"
  [ -r /usr/share/java/zookeeper.jar ] || die "ZooKeeper is not installed (Debian package zookeeper; run scripts/ensure-deps.sh zookeeper)"
  if pid=$(pid_of "$dir"); then die "a server already runs in $dir (pid $pid)"; fi
  if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then die "$addr:$port is already in use"; fi
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  {
    echo "tickTime=${ZK_TICK_MS:-500}"
    echo "initLimit=20"
    echo "syncLimit=10"
    echo "dataDir=$dir/data"
    echo "clientPort=$port"
    echo "clientPortAddress=$addr"
    echo "maxSessionTimeout=60000"
    echo "maxClientCnxns=0"
    # No Jetty admin server on 8080 and no JMX: a private server opens only its own ports.
    echo "admin.enableServer=false"
    echo "4lw.commands.whitelist=ruok,srvr,stat,mntr"
    if [ -n "$id" ]; then
      local n=0 server
      IFS=, read -ra list <<<"$servers"
      for server in "${list[@]}"; do
        n=$((n + 1))
        echo "server.$n=$server"
      done
    fi
  } >"$dir/zoo.cfg"
  if [ -n "$id" ]; then echo "$id" >"$dir/data/myid"; fi
  # setsid: the server outlives this script, in its own session, away from the caller's signals.
  setsid java -Xmx192m -XX:+UseSerialGC -cp "$jars" -Dzookeeper.jmx.log4j.disable=true \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$dir/zookeeper.pid"
  local deadline=$((SECONDS + ${ZK_START_TIMEOUT_SEC:-60}))
  # A standalone server is ready when it serves; an ensemble member when it listens (it serves
  # once a quorum is up, which needs the others started too).
  local word=srvr
  [ -n "$id" ] && word=ruok
  until four "$addr" "$port" "$word" | grep -q -e '^imok' -e '^Mode: '; do
    if ! pid_of "$dir" >/dev/null; then rm -f "$dir/zookeeper.pid"; die "the server in $dir exited; see $dir/zookeeper.log: $(tail -n 3 "$dir/zookeeper.log" | tr '\n' ' ')"; fi
    if [ $SECONDS -ge $deadline ]; then stop "$dir"; die "the server in $dir did not answer on $addr:$port in time"; fi
    sleep 0.2
  done
}

stop() {
  [ $# -eq 1 ] || die "usage: stop DIR"
  local dir=$1 pid
  pid=$(pid_of "$dir") || { rm -f "$dir/zookeeper.pid"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/zookeeper.pid"
}

status() {
  [ $# -ge 2 ] || die "usage: status DIR PORT [ADDR]"
  local answer
  answer=$(four "${3:-127.0.0.1}" "$2" srvr)
  local mode
  mode=$(sed -n 's/^Mode: //p' <<<"$answer")
  [ -n "$mode" ] || die "no server is serving on ${3:-127.0.0.1}:$2"
  echo "$mode"
}

[ $# -ge 1 ] || die "usage: start|stop|status ..."
command=$1
shift
case "$command" in
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  *) die "unknown command '$command' (start, stop, status)" ;;
esac
