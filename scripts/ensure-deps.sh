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
  # make, g++ and python3: node-gyp builds the native addons npm ci installs (@ronomon/reed-solomon,
  # the erasure coding codec) against Node's own headers.
  # e2fsprogs, xfsprogs: the multi-disk test makes loop file systems and shuts one down (xfs_io)
  packages=(fuse libfuse2 qemu-utils libnbd-bin nbdkit fio openssl zookeeper make g++ python3 e2fsprogs xfsprogs)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another install may hold dpkg's lock (a parallel set-up on the same machine): wait for it.
  # No recommended packages: vagrant's pull in libguestfs and fuse3, which removes fuse (sheepfs).
  apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q --no-install-recommends)
  "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1 || {
    "${apt[@]}" update >/dev/null && "${apt[@]}" install "${missing[@]}" >/dev/null
  }
fi

# /dev/fuse must exist for sheepfs (containers sometimes lack the node).
if [ ! -e /dev/fuse ]; then mknod -m 666 /dev/fuse c 10 229 || true; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
if [ "$build" = 1 ]; then npm run --silent build; fi
