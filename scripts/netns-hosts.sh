#!/usr/bin/env bash
# Hosts on one machine: network namespaces joined by a Linux bridge, one veth pair each. The
# machine itself has an address on the bridge, so it reaches every host (dog, sheepfs, tests).
# Used by `npm run lab` and by the tests (test/support/netns-hosts.ts); one implementation.
#
#   netns-hosts.sh up N          remove leftovers of an earlier run, then make hosts 1..N
#   netns-hosts.sh down          kill what runs in the hosts, remove them and the bridge
#   netns-hosts.sh cut I         pull host I's cable: its bridge-side link goes down
#   netns-hosts.sh restore I     plug it back in
#   netns-hosts.sh exec I CMD..  run CMD with host I's network (nsenter --net: the machine's
#                                files and mounts, so a FUSE mount made there is seen by all)
#   netns-hosts.sh list          the hosts that exist: NAME ADDRESS
#
# Host I is the namespace ${NETNS_PREFIX}I with address ${NETNS_NET}.(NETNS_BASE+I); the bridge
# NETNS_BRIDGE has ${NETNS_NET}.NETNS_BASE. Defaults: sdt-h, sdtbr0, 10.77.0, 10, prefix length 25.
set -euo pipefail

prefix=${NETNS_PREFIX:-sdt-h}
bridge=${NETNS_BRIDGE:-sdtbr0}
net=${NETNS_NET:-10.77.0}
base=${NETNS_BASE:-10}
length=${NETNS_PREFIX_LENGTH:-25}
hosts_max=32

die() { echo "netns-hosts: error: $*" >&2; exit 1; }

name_of() { echo "$prefix$1"; }
addr_of() { echo "$net.$((base + $1))"; }
# The bridge-side end of host I's cable (interface names are at most 15 bytes).
veth_of() { echo "$prefix$1-v"; }

index() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$hosts_max" ] || die "invalid host '${1:-}': expected 1-$hosts_max"
  [ -e "/run/netns/$(name_of "$1")" ] || die "no host $1 (namespace $(name_of "$1"))"
  echo "$1"
}

# Our namespaces: the prefix followed by a number, nothing else.
ours() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix//./\\.}[0-9]+$" || true
}

down() {
  local ns pids
  for ns in $(ours); do
    # SIGKILL: a daemon must not outlive its host. Only processes in our namespace are named.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      local tries=0
      while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && [ "$tries" -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
    fi
    ip netns delete "$ns" 2>/dev/null || true
  done
  # A veth end left in the machine's namespace (its peer's namespace is gone) and the bridge.
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${prefix//./\\.}[0-9]+-v$" || true); do
    ip link delete "$link" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link delete "$bridge"; fi
}

up() {
  local count=$1 i ns veth
  [[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] && [ "$count" -le "$hosts_max" ] || die "invalid count '$count': expected 1-$hosts_max"
  [ $((base + count)) -le 254 ] || die "NETNS_BASE $base + $count hosts does not fit in $net.0/24"
  command -v ip >/dev/null || die "ip (iproute2) is not installed"
  down
  ip link add "$bridge" type bridge
  ip addr add "$net.$base/$length" dev "$bridge"
  ip link set "$bridge" up
  for ((i = 1; i <= count; i++)); do
    ns=$(name_of "$i")
    veth=$(veth_of "$i")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$bridge"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(addr_of "$i")/$length" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  cut) i=$(index "${2:-}") && ip link set "$(veth_of "$i")" down ;;
  restore) i=$(index "${2:-}") && ip link set "$(veth_of "$i")" up ;;
  exec)
    i=$(index "${2:-}")
    shift 2
    [ $# -gt 0 ] || die "exec needs a command"
    exec nsenter --net="/run/netns/$(name_of "$i")" -- "$@"
    ;;
  list) for ns in $(ours); do echo "$ns $(addr_of "${ns#"$prefix"}")"; done ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) die "unknown command '${1:-}': expected up, down, cut, restore, exec or list" ;;
esac
