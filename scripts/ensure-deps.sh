#!/usr/bin/env bash
# Installs what the project needs and is missing: Debian packages (apt-get, only when absent),
# node modules (npm ci), and the build. Safe to run again; does nothing that is already done.
# Usage: scripts/ensure-deps.sh [--no-build] [PACKAGE...]   (default package set below)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
if [ "${1:-}" = "--no-build" ]; then build=0; shift; fi
packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  packages=(fuse libfuse2 qemu-utils libnbd-bin nbdkit fio openssl zookeeper)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
  }
fi

# /dev/fuse must exist for sheepfs (containers sometimes lack the node).
if [ ! -e /dev/fuse ]; then mknod -m 666 /dev/fuse c 10 229 || true; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
if [ "$build" = 1 ]; then npx tsc -p tsconfig.json; fi
