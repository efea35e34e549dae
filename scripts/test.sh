#!/usr/bin/env bash
# npm test: set up what is missing (Debian packages, npm ci, build), run every vitest file, and end
# with one line that says how many tests passed, failed and were skipped. Exit code = vitest's.
# Extra arguments go to vitest (e.g. `npm test -- test/local-state.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-deps.sh fuse libfuse2 qemu-utils libnbd-bin nbdkit fio openssl zookeeper vagrant vagrant-libvirt make g++ python3 e2fsprogs xfsprogs || {
  echo "test: error: setting up dependencies failed (scripts/ensure-deps.sh)" >&2
  exit 1
}

report=$(mktemp /tmp/vitest-report.XXXXXX.json)
trap 'rm -f "$report"' EXIT

set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
rc=$?
set -e

# vitest's own "Tests  N passed | M failed" is above; repeat the totals last, where CI logs end.
if [ -s "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    const files = r.testResults ?? [];
    const badFiles = files.filter((f) => f.status === "failed").map((f) => require("path").relative(process.cwd(), f.name));
    console.log(`SUMMARY: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped` +
      ` (${r.numTotalTests} tests in ${files.length} files)`);
    if (badFiles.length) console.log(`FAILED FILES: ${badFiles.join(" ")}`);
  ' "$report" || echo "SUMMARY: could not read the vitest report; vitest exited $rc"
else
  echo "SUMMARY: vitest wrote no report (exit $rc): see the output above"
fi
exit "$rc"
