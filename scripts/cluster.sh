#!/usr/bin/env bash
# A three-node Sheepdog cluster on this host, for trying the system out.
#
#   npm run cluster              set up (Debian packages, npm ci, build), start three sheep on
#                                127.0.0.1:7000-7002 (zones 0,1,2), format with 3 copies if new,
#                                mount sheepfs at /sheep when it is available, print next steps
#   npm run cluster -- status    cluster info and node list
#   npm run cluster -- stop      unmount /sheep, shut the cluster down, wait for every sheep to exit
#
# Running it again while the cluster runs only reports the status. Data stays in the stores
# (/var/lib/sheepdog/N) across stop and start. Environment overrides, for tests or a second cluster:
#   SHEEP_STORE_ROOT (/var/lib/sheepdog)  SHEEP_CLUSTER_DIR (/run/sheepdog-cluster)
#   SHEEP_BASE_PORT (7000)  SHEEPFS_MOUNT (/sheep)  SHEEP_STOP_TIMEOUT (seconds, 15)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

store_root=${SHEEP_STORE_ROOT:-/var/lib/sheepdog}
cluster_dir=${SHEEP_CLUSTER_DIR:-/run/sheepdog-cluster}
base_port=${SHEEP_BASE_PORT:-7000}
mount_dir=${SHEEPFS_MOUNT:-/sheep}
stop_timeout=${SHEEP_STOP_TIMEOUT:-15}
copies=3
nodes=(0 1 2)
addr=127.0.0.1

die() { echo "cluster: error: $*" >&2; exit 1; }
say() { echo "cluster: $*"; }

port_of() { echo $((base_port + $1)); }
nbd_port_of() { echo $((10809 + base_port + $1 - 7000)); }
store_of() { echo "$store_root/$1"; }
dog() { node "$repo/bin/dog" "$@"; }

# The pid in a store's pid file if a sheep holds the store's lock (flock), else nothing.
live_pid() {
  local file pid
  file="$(store_of "$1")/sheep.pid"
  [ -f "$file" ] || return 0
  flock --nonblock --shared "$file" true 2>/dev/null && return 0
  pid=$(tr -dc '0-9' <"$file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

answers() { dog node list -a "$addr" -p "$(port_of "$1")" >/dev/null 2>&1; }

# The first port whose sheep answers, or nothing.
answering_port() {
  local i
  for i in "${nodes[@]}"; do
    if answers "$i"; then port_of "$i"; return 0; fi
  done
}

sheepfs_available() {
  [ -f "$repo/dist/fs/cluster-backend.js" ] && node "$repo/bin/sheepfs" --help >/dev/null 2>&1
}

# Bash completion for dog and the man pages, where this host keeps them (as root); else skipped.
install_extras() {
  local completions=/etc/bash_completion.d man1=/usr/local/share/man/man1
  if [ -d "$completions" ] && [ -w "$completions" ]; then
    node "$repo/bin/dog" completion bash >"$completions/dog" || say "could not install bash completion"
  fi
  if mkdir -p "$man1" 2>/dev/null && [ -w "$man1" ]; then
    cp "$repo"/man/*.1 "$man1/" || say "could not install the man pages"
  fi
}

is_mounted() { mountpoint -q "$mount_dir" 2>/dev/null; }

print_status() {
  local port
  port=$(answering_port)
  if [ -z "$port" ]; then
    say "not running (no sheep answers on $addr:$(port_of 0)-$(port_of "${nodes[-1]}"))"
    return 1
  fi
  echo "== dog cluster info -p $port"
  dog cluster info -a "$addr" -p "$port" || true
  echo
  echo "== dog node list -p $port"
  dog node list -a "$addr" -p "$port" || true
  echo
  local i pid
  for i in "${nodes[@]}"; do
    pid=$(live_pid "$i")
    if [ -n "$pid" ]; then
      echo "sheep $i: pid $pid, $addr:$(port_of "$i"), nbd $addr:$(nbd_port_of "$i"), store $(store_of "$i")"
    else
      echo "sheep $i: not running (store $(store_of "$i"))"
    fi
  done
  if is_mounted; then echo "sheepfs: mounted at $mount_dir"; else echo "sheepfs: not mounted"; fi
}

print_next_steps() {
  cat <<EOF

Next steps:
  node bin/dog vdi create alpine 2G                  # a 2 GiB virtual disk, 3 copies
  node bin/dog vdi list
  qemu-img convert -p -n -O raw disk.qcow2 nbd://127.0.0.1:10809/alpine   # fill it over NBD
  nbdinfo nbd://127.0.0.1:10809/alpine               # any sheep serves NBD: ports 10809-10811
EOF
  if is_mounted; then
    cat <<EOF
  echo alpine > $mount_dir/vdi/mount                 # sheepfs: the VDI as the file $mount_dir/volume/alpine
  dd if=disk.raw of=$mount_dir/volume/alpine bs=4M conv=fsync
  dd if=$mount_dir/volume/alpine of=/dev/null bs=4M
  echo alpine > $mount_dir/vdi/unmount
EOF
  fi
  cat <<EOF
  npm run cluster -- status                          # cluster info and node list
  npm run cluster -- stop                            # unmount, shut down, wait for every sheep
Logs: $(store_of 0)/sheep.log (one per store)$(is_mounted && echo ", /var/log/sheepfs.log")
EOF
}

start_sheep() {
  local i=$1 port store out
  port=$(port_of "$i")
  store=$(store_of "$i")
  mkdir -p "$store"
  if ! out=$(node "$repo/bin/sheep" -b "$addr" -p "$port" -z "$i" -c "local:$cluster_dir" "$store" 2>&1); then
    die "sheep $i on $addr:$port did not start: $(echo "$out" | tail -n 1) (log: $store/sheep.log)"
  fi
  say "started sheep $i on $addr:$port (zone $i, pid $(live_pid "$i"), store $store)"
}

wait_answers() {
  local i=$1 tries=0
  until answers "$i"; do
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || die "sheep $i on $addr:$(port_of "$i") does not answer 'dog node list' after 30 s (log: $(store_of "$i")/sheep.log)"
    sleep 0.5
  done
}

# Waits until the first node sees every node, so the format covers all three.
wait_members() {
  local port tries=0 count
  port=$(port_of 0)
  while :; do
    count=$(dog node list -a "$addr" -p "$port" -r 2>/dev/null | grep -c "$addr:" || true)
    [ "$count" -ge "${#nodes[@]}" ] && return 0
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || die "only $count of ${#nodes[@]} sheep joined after 30 s"
    sleep 0.5
  done
}

mount_sheepfs() {
  if ! sheepfs_available; then
    say "sheepfs is not available (no cluster backend in dist/fs yet): not mounting $mount_dir"
    return 0
  fi
  if is_mounted; then say "sheepfs already mounted at $mount_dir"; return 0; fi
  mkdir -p "$mount_dir"
  local out
  if out=$(node "$repo/bin/sheepfs" -a "$addr" -p "$(port_of 0)" "$mount_dir" 2>&1); then
    say "mounted sheepfs at $mount_dir"
  else
    # The cluster is usable without sheepfs: report and go on.
    say "warning: sheepfs did not mount at $mount_dir: $(echo "$out" | tail -n 1)"
  fi
}

cmd_start() {
  local i running=0 pid
  for i in "${nodes[@]}"; do
    pid=$(live_pid "$i")
    [ -n "$pid" ] && running=$((running + 1))
  done
  if [ "$running" -eq "${#nodes[@]}" ] && [ -n "$(answering_port)" ]; then
    say "already running"
    is_mounted || mount_sheepfs
    print_status || true
    return 0
  fi

  bash "$repo/scripts/ensure-deps.sh" || die "setting up dependencies failed (scripts/ensure-deps.sh exited $?)"
  command -v node >/dev/null || die "node is not installed (Node 20 is needed)"
  install_extras
  mkdir -p "$cluster_dir" "$store_root"

  for i in "${nodes[@]}"; do
    pid=$(live_pid "$i")
    if [ -n "$pid" ]; then
      say "sheep $i already running (pid $pid)"
    else
      start_sheep "$i"
    fi
  done
  for i in "${nodes[@]}"; do wait_answers "$i"; done
  wait_members

  local info
  info=$(dog cluster info -a "$addr" -p "$(port_of 0)" 2>&1) || die "dog cluster info failed: $(echo "$info" | tail -n 1)"
  if grep -q "Waiting for cluster to be formatted" <<<"$info"; then
    local out
    out=$(dog cluster format -c "$copies" -a "$addr" -p "$(port_of 0)" 2>&1) || die "dog cluster format failed: $(echo "$out" | tail -n 1)"
    say "formatted the cluster with $copies copies ($out)"
  else
    say "cluster already formatted: $(head -n 1 <<<"$info")"
  fi

  mount_sheepfs
  echo
  print_status || true
  print_next_steps
}

# Waits for a pid to exit; SIGTERM, then SIGKILL after the timeout. Says what it did.
reap() {
  local name=$1 pid=$2 waited=0 limit=$((stop_timeout * 10))
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$limit" ]; do sleep 0.1; waited=$((waited + 1)); done
  if ! kill -0 "$pid" 2>/dev/null; then say "$name (pid $pid) exited"; return 0; fi
  say "$name (pid $pid) still running after ${stop_timeout} s: SIGTERM"
  kill -TERM "$pid" 2>/dev/null || true
  waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
  if ! kill -0 "$pid" 2>/dev/null; then say "$name (pid $pid) exited after SIGTERM"; return 0; fi
  say "$name (pid $pid) still running 5 s after SIGTERM: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then return 1; fi
  say "$name (pid $pid) killed"
  return 0
}

cmd_stop() {
  local did=0 failed=0
  if is_mounted; then
    if fusermount -u "$mount_dir" 2>/dev/null; then
      say "unmounted sheepfs from $mount_dir"
    elif fusermount -u -z "$mount_dir" 2>/dev/null || umount -l "$mount_dir" 2>/dev/null; then
      say "$mount_dir was busy: lazily unmounted (it goes away when the last user closes it)"
    else
      say "warning: could not unmount $mount_dir"
      failed=1
    fi
    did=1
  fi

  # The pid files vanish as the sheep exit: read them first.
  local i pid pids=() names=()
  for i in "${nodes[@]}"; do
    pid=$(live_pid "$i")
    if [ -n "$pid" ]; then pids+=("$pid"); names+=("sheep $i"); fi
  done

  local port
  port=$(answering_port)
  if [ -n "$port" ]; then
    if out=$(dog cluster shutdown -a "$addr" -p "$port" 2>&1); then
      say "asked the cluster to shut down (dog cluster shutdown -p $port)"
    else
      say "dog cluster shutdown failed ($(echo "$out" | tail -n 1)): stopping each sheep by signal"
      for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    fi
    did=1
  elif [ ${#pids[@]} -gt 0 ]; then
    say "no sheep answers: stopping each sheep by signal"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  fi

  local k
  for k in "${!pids[@]}"; do
    reap "${names[$k]}" "${pids[$k]}" || { say "warning: ${names[$k]} (pid ${pids[$k]}) survived SIGKILL"; failed=1; }
    did=1
  done

  if [ "$did" = 0 ]; then say "nothing to stop: no sheep running, $mount_dir not mounted"; fi
  [ "$failed" = 0 ] || die "stop did not finish cleanly (see above)"
  [ "$did" = 0 ] || say "stopped (data kept in $store_root/{0,1,2}; 'npm run cluster' starts it again)"
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) print_status ;;
  -h|--help|help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1': expected start, stop or status" ;;
esac
