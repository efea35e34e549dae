#!/usr/bin/env bash
# Three hosts on this machine, for trying a multi-host cluster without VMs: each host is a network
# namespace with its own address on a bridge (scripts/netns-hosts.sh), set up by the same script
# as a Vagrant VM (scripts/provision-host.sh).
#
#   npm run lab              set up (Debian packages, npm ci, build), make hosts node1-node3, start
#                            the coordinator on node1 and a sheep on each, format with 3 copies,
#                            mount sheepfs at /sheep on this machine, print next steps
#   npm run lab -- status    cluster info and node list
#   npm run lab -- stop      unmount /sheep, shut the cluster down, remove the hosts
#   npm run lab -- exec N CMD...   run CMD on host nodeN (its network; this machine's files)
#   npm run lab -- cut N | restore N   pull nodeN's network cable out, plug it back in
#
# Data stays in the stores (/var/lib/sheepdog/lab/nodeN) across stop and start. Environment
# overrides (tests): LAB_ROOT (/var/lib/sheepdog/lab) LAB_MOUNT (/sheep) LAB_PORT (7000)
#   LAB_NBD_PORT (10809, on each host's loopback) LAB_ZOOKEEPER_PORT (2181) LAB_NET (10.77.0)
#   LAB_BASE (140: node N is LAB_NET.(LAB_BASE+N))
#   LAB_PREFIX (sdt-lab) LAB_BRIDGE (sdtlab0) LAB_STOP_TIMEOUT (seconds, 15)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

root=${LAB_ROOT:-/var/lib/sheepdog/lab}
mount_dir=${LAB_MOUNT:-/sheep}
port=${LAB_PORT:-7000}
zk_port=${LAB_ZOOKEEPER_PORT:-2181}
nbd_port=${LAB_NBD_PORT:-10809}
stop_timeout=${LAB_STOP_TIMEOUT:-15}
export NETNS_PREFIX=${LAB_PREFIX:-sdt-lab} NETNS_BRIDGE=${LAB_BRIDGE:-sdtlab0}
export NETNS_NET=${LAB_NET:-10.77.0} NETNS_BASE=${LAB_BASE:-140}
hosts=(1 2 3)
copies=3

die() { echo "lab: error: $*" >&2; exit 1; }
say() { echo "lab: $*"; }

addr_of() { echo "$NETNS_NET.$((NETNS_BASE + $1))"; }
store_of() { echo "$root/node$1"; }
# The cluster driver of every sheep: ZooKeeper on node1 (local:$root/cluster would work too, only
# because the hosts share this machine's files and pids).
driver() { echo "zookeeper:$(addr_of 1):$zk_port"; }
netns() { bash "$repo/scripts/netns-hosts.sh" "$@"; }
dog() { node "$repo/bin/dog" "$@"; }

lab_exists() { [ -n "$(netns list)" ]; }
is_mounted() { mountpoint -q "$mount_dir" 2>/dev/null; }
answers() { dog node list -a "$(addr_of "$1")" -p "$port" >/dev/null 2>&1; }

print_status() {
  if ! lab_exists; then say "not running (no hosts ${NETNS_PREFIX}1-${#hosts[@]})"; return 1; fi
  local i
  for i in "${hosts[@]}"; do
    if answers "$i"; then
      echo "== dog cluster info -a $(addr_of "$i")"
      dog cluster info -a "$(addr_of "$i")" -p "$port" || true
      echo
      echo "== dog node list -a $(addr_of "$i")"
      dog node list -a "$(addr_of "$i")" -p "$port" || true
      break
    fi
  done
  echo
  for i in "${hosts[@]}"; do
    if answers "$i"; then state=running; else state="not answering"; fi
    echo "node$i: namespace $NETNS_PREFIX$i, sheep $(addr_of "$i"):$port ($state), store $(store_of "$i")"
  done
  if is_mounted; then echo "sheepfs: mounted at $mount_dir"; else echo "sheepfs: not mounted"; fi
}

print_next_steps() {
  local a1 a2 a3
  a1=$(addr_of 1) a2=$(addr_of 2) a3=$(addr_of 3)
  cat <<EOF

Next steps:
  cat $mount_dir/node/list                                # the three hosts, through sheepfs
  node bin/dog vdi create alpine 2G -a $a1                # any host takes any request
  node bin/dog vdi list -a $a3
  echo alpine > $mount_dir/vdi/mount; dd if=disk.raw of=$mount_dir/volume/alpine bs=4M conv=fsync
  npm run lab -- exec 2 nbdinfo nbd://127.0.0.1:$nbd_port/alpine   # NBD on node2's loopback
  npm run lab -- exec 3 bash                              # a shell on node3 (its network)
  npm run lab -- cut 3                                    # node3 loses its network...
  npm run lab -- restore 3                                # ...and gets it back
  npm run lab -- status
  npm run lab -- stop
Logs: $(store_of 1)/sheep.log (one per store), $root/zookeeper/zookeeper.log, /var/log/sheepfs.log
EOF
}

# /sheep mounted while the lab is not running belongs to someone else, most likely `npm run cluster`.
refuse_foreign_mount() {
  is_mounted || return 0
  # npm run cluster's first sheep (scripts/cluster.sh: SHEEP_BASE_PORT, 7000 by default).
  local cluster_port=${SHEEP_BASE_PORT:-7000}
  if dog node list -a 127.0.0.1 -p "$cluster_port" >/dev/null 2>&1; then
    die "$mount_dir is mounted already by \`npm run cluster\` (its sheep answer on 127.0.0.1:$cluster_port): stop it with \`npm run cluster -- stop\`, then run \`npm run lab\` again"
  fi
  die "$mount_dir is mounted already (not by the lab): unmount it (fusermount -u $mount_dir), or give another LAB_MOUNT"
}

provision() {
  local i=$1
  shift
  netns exec "$i" bash "$repo/scripts/provision-host.sh" --address "$(addr_of "$i")" --port "$port" \
    --nbd "127.0.0.1:$nbd_port" --cluster "$(driver)" --key "$root/cluster.key" --store "$(store_of "$i")" --wait 120 "$@" |
    sed "s/^/node$i: /"
  return "${PIPESTATUS[0]}"
}

cmd_start() {
  if lab_exists && is_mounted; then
    say "already running"
    print_status || true
    return 0
  fi
  refuse_foreign_mount
  bash "$repo/scripts/ensure-deps.sh" fuse libfuse2 qemu-utils libnbd-bin nbdkit openssl zookeeper ||
    die "setting up dependencies failed (scripts/ensure-deps.sh exited $?)"
  if ! lab_exists; then
    netns up "${#hosts[@]}" || die "could not make the hosts (scripts/netns-hosts.sh up)"
    say "made hosts node1-node${#hosts[@]}: $(addr_of 1)-$(addr_of "${hosts[-1]}") on bridge $NETNS_BRIDGE ($NETNS_NET.$NETNS_BASE on this machine)"
  fi
  mkdir -p "$root"
  local zookeeper=()
  [[ "$(driver)" != zookeeper:* ]] || zookeeper=(--zookeeper "$root/zookeeper")
  provision 1 "${zookeeper[@]}" || die "setting up node1 failed (see above)"
  provision 2 --no-install || die "setting up node2 failed (see above)"
  provision 3 --no-install --format "$copies" --nodes "${#hosts[@]}" --mount "$mount_dir" ||
    die "setting up node3 failed (see above)"
  echo
  print_status || true
  print_next_steps
}

# The pid a store's lock names, if a sheep holds it.
live_pid() {
  local file
  file="$(store_of "$1")/sheep.pid"
  [ -f "$file" ] || return 0
  flock --nonblock --shared "$file" true 2>/dev/null && return 0
  tr -dc '0-9' <"$file" 2>/dev/null || true
}

cmd_stop() {
  if is_mounted && lab_exists; then
    fusermount -u "$mount_dir" 2>/dev/null || fusermount -u -z "$mount_dir" 2>/dev/null || umount -l "$mount_dir" || true
    say "unmounted sheepfs from $mount_dir"
  fi
  if ! lab_exists; then say "nothing to stop: no hosts $NETNS_PREFIX*"; return 0; fi
  local i pid pids=()
  for i in "${hosts[@]}"; do pid=$(live_pid "$i"); [ -z "$pid" ] || pids+=("$pid"); done
  for i in "${hosts[@]}"; do
    if answers "$i"; then
      dog cluster shutdown -a "$(addr_of "$i")" -p "$port" >/dev/null 2>&1 && say "asked the cluster to shut down (through node$i)"
      break
    fi
  done
  local deadline=$((SECONDS + stop_timeout))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && say "sheep pid $pid still running after ${stop_timeout} s: it is killed with its host"
  done
  [ ! -f "$repo/scripts/zookeeper.sh" ] || bash "$repo/scripts/zookeeper.sh" stop "$root/zookeeper" >/dev/null 2>&1 || true
  netns down
  say "stopped (data kept in $root; 'npm run lab' starts it again)"
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) print_status ;;
  exec|cut|restore) netns "$@" ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) die "unknown command '$1': expected start, stop, status, exec, cut or restore" ;;
esac
