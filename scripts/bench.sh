#!/usr/bin/env bash
# npm run bench: set up what is missing (Debian packages, npm ci, build), then run every
# bench/*.bench.mjs. Arguments filter by file name: `npm run bench -- foundation`.
# Environment: BENCH_SIZE (bytes or 256M/1G, default 1G), BENCH_RUNS (3), BENCH_DIR (base temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh || { echo "bench: error: setting up dependencies failed (scripts/ensure-deps.sh)" >&2; exit 1; }
exec node bench/run.mjs "$@"
