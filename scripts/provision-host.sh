#!/usr/bin/env bash
# Sets up one host of a multi-host cluster and starts its sheep: the one script behind the Vagrant
# lab (each VM runs it) and `npm run lab` (run on each network-namespace host). Safe to run again:
# what is installed or running already is left as it is.
#
#   scripts/provision-host.sh --address ADDR --cluster DRIVER [options]
#
#   --address ADDR        this host's address: its sheep listens on ADDR:PORT and is known by it
#   --cluster DRIVER      the sheep's -c: zookeeper:HOST:PORT[,HOST:PORT...] (or local:DIR on one machine)
#   --zookeeper DIR       also run a ZooKeeper server here (scripts/zookeeper.sh, data in DIR) on
#                         ADDR at the port of the first HOST:PORT of --cluster
#   --key FILE            the cluster key every host's sheep holds (sheep -k): made, mode 0600, when
#                         missing, from $SHEEPDOG_CLUSTER_KEY if set, else at random (a key does
#                         not travel through ZooKeeper: every host needs the same file)
#   --store DIR           the sheep's store (default /var/lib/sheepdog/store)
#   --port PORT           the sheep's port (default 7000)
#   --nbd [ADDR:]PORT     the sheep's NBD listener (default: the sheep's, on loopback)
#   --format COPIES       once --nodes sheep are members, format with COPIES (if not formatted yet)
#   --nodes N             how many sheep --format waits for (default 1)
#   --mount DIR           mount sheepfs at DIR, against this host's sheep
#   --no-install          skip installing (Node, Debian packages, node modules, the build)
#   --wait SEC            how long to wait for ZooKeeper, the sheep and the members (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

address='' cluster='' zk_dir='' key_file='' store=/var/lib/sheepdog/store port=7000 nbd=''
copies='' nodes=1 mount_dir='' install=1 wait_sec=300

die() { echo "provision: error: $*" >&2; exit 1; }
say() { echo "provision: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --address) address=${2:?}; shift 2 ;;
    --cluster) cluster=${2:?}; shift 2 ;;
    --zookeeper) zk_dir=${2:?}; shift 2 ;;
    --key) key_file=${2:?}; shift 2 ;;
    --store) store=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --nbd) nbd=${2:?}; shift 2 ;;
    --format) copies=${2:?}; shift 2 ;;
    --nodes) nodes=${2:?}; shift 2 ;;
    --mount) mount_dir=${2:?}; shift 2 ;;
    --no-install) install=0; shift ;;
    --wait) wait_sec=${2:?}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$address" ] || die "--address ADDR is needed"
[ -n "$cluster" ] || die "--cluster DRIVER is needed"
[[ "$nodes" =~ ^[0-9]+$ ]] || die "invalid --nodes '$nodes'"
[[ "$wait_sec" =~ ^[0-9]+$ ]] || die "invalid --wait '$wait_sec'"

dog() {
  if [ -n "$key_file" ] && [ -s "$key_file" ]; then set -- "$@" -k "$key_file"; fi
  node "$repo/bin/dog" "$@" -a "$address" -p "$port"
}

# Polls a command every half second until it succeeds; dies naming `what` after --wait seconds.
wait_for() {
  local what=$1 deadline=$((SECONDS + wait_sec))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not after ${wait_sec} s"
    sleep 0.5
  done
}

node_ok() { command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; }

install_node() {
  node_ok && return 0
  # Debian 12 ships Node 18; the project needs 20: NodeSource's Debian repository.
  say "installing Node 20 (NodeSource)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=300 install -y -q ca-certificates curl gnupg >/dev/null
  curl -fsSL https://deb.nodesource.com/setup_20.x | bash - >/dev/null
  apt-get -o DPkg::Lock::Timeout=300 install -y -q nodejs >/dev/null
  node_ok || die "Node 20 did not install"
}

# The build is skipped when dist/ is newer than every source (a second host of the same checkout).
built() {
  [ -f dist/sheep/main.js ] && [ -z "$(find src -name '*.ts' -newer dist/sheep/main.js -print -quit)" ]
}

install_project() {
  install_node
  local packages=(fuse libfuse2 qemu-utils libnbd-bin openssl make g++ python3)
  [ -z "$zk_dir" ] || packages+=(zookeeper default-jre-headless)
  bash scripts/ensure-deps.sh --no-build "${packages[@]}" || die "scripts/ensure-deps.sh failed"
  if ! built; then
    say "building"
    npm run --silent build || die "the build failed"
  fi
}

zk_port() {
  local first=${cluster#zookeeper:}
  first=${first%%,*}
  first=${first%%/*}
  echo "${first##*:}"
}

start_zookeeper() {
  [[ "$cluster" == zookeeper:* ]] || die "--zookeeper needs --cluster zookeeper:HOST:PORT"
  local zk_port
  zk_port=$(zk_port)
  if bash scripts/zookeeper.sh status "$zk_dir" "$zk_port" "$address" >/dev/null 2>&1; then
    say "ZooKeeper already serves on $address:$zk_port"
    return 0
  fi
  bash scripts/zookeeper.sh start "$zk_dir" "$zk_port" "$address" || die "ZooKeeper did not start (log: $zk_dir/zookeeper.log)"
  say "started ZooKeeper on $address:$zk_port (data $zk_dir)"
}

# Each HOST:PORT of a zookeeper driver, so the sheep is started only once one answers.
zookeeper_answers() {
  local list=${cluster#zookeeper:} entry
  list=${list%%/*}
  IFS=, read -ra entries <<<"$list"
  for entry in "${entries[@]}"; do
    [[ "$entry" == *:* ]] || continue
    if (exec 3<>"/dev/tcp/${entry%:*}/${entry##*:}" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null | grep -q imok; then return 0; fi
  done
  return 1
}

sheep_answers() { dog node list >/dev/null 2>&1; }

# One line of base64 of 32 bytes, readable by its owner only (docs/security.md).
ensure_key() {
  [ ! -s "$key_file" ] || return 0
  mkdir -p "$(dirname "$key_file")"
  (
    umask 077
    if [ -n "${SHEEPDOG_CLUSTER_KEY:-}" ]; then echo "$SHEEPDOG_CLUSTER_KEY"; else openssl rand -base64 32; fi >"$key_file.tmp"
  )
  mv "$key_file.tmp" "$key_file"
  say "wrote the cluster key to $key_file"
}

start_sheep() {
  if sheep_answers; then say "sheep already answers on $address:$port"; return 0; fi
  if [[ "$cluster" == zookeeper:* ]]; then wait_for "no ZooKeeper of ${cluster#zookeeper:} answers" zookeeper_answers; fi
  mkdir -p "$store"
  local args=(-b "$address" -p "$port" -c "$cluster") out
  if [ -n "$key_file" ]; then ensure_key; args+=(-k "$key_file"); fi
  [ -z "$nbd" ] || args+=(--nbd "$nbd")
  # The sheep daemonizes once it is up (pid file and log in the store).
  out=$(node "$repo/bin/sheep" "${args[@]}" "$store" 2>&1) || die "the sheep did not start: $(tail -n 1 <<<"$out") (log: $store/sheep.log)"
  wait_for "the sheep on $address:$port does not answer" sheep_answers
  say "started a sheep on $address:$port (store $store)"
}

members_at_least() { [ "$(dog node list -r 2>/dev/null | grep -c .)" -ge "$nodes" ]; }

format_cluster() {
  wait_for "fewer than $nodes sheep joined" members_at_least
  if ! dog cluster info | grep -q "Waiting for cluster to be formatted"; then
    say "already formatted: $(dog cluster info | head -n 1)"
    return 0
  fi
  say "formatting with $copies copies: $(dog cluster format -c "$copies")"
}

mount_sheepfs() {
  if mountpoint -q "$mount_dir" 2>/dev/null; then say "$mount_dir is mounted already"; return 0; fi
  mkdir -p "$mount_dir"
  local out
  local key=()
  [ -z "$key_file" ] || key=(-k "$key_file")
  out=$(node "$repo/bin/sheepfs" -a "$address" -p "$port" "${key[@]}" "$mount_dir" 2>&1) || die "sheepfs did not mount at $mount_dir: $(tail -n 1 <<<"$out")"
  say "mounted sheepfs at $mount_dir"
}

[ "$install" = 0 ] || install_project
[ -z "$zk_dir" ] || start_zookeeper
start_sheep
[ -z "$copies" ] || format_cluster
[ -z "$mount_dir" ] || mount_sheepfs
