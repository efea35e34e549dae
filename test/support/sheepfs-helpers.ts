// Mount helpers for the sheepfs tests (test/sheepfs.test.ts, test/sheepfs-cluster.test.ts): they
// look at /proc/self/mountinfo and run fusermount/umount in child processes, never touching the
// mount through node's fs (a slip in sheepfs would hang the test runner in the kernel).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The mountinfo line whose mount point (5th field) is `mountpoint`, if mounted. */
export function mountInfoLine(mountpoint: string): string | undefined {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((line) => line.split(' ')[4] === mountpoint);
}

export function isMounted(mountpoint: string): boolean {
  return mountInfoLine(mountpoint) !== undefined;
}

const bashWithTimeout = (command: string): unknown => spawnSync('bash', ['-c', command], { timeout: 10_000 });

/**
 * Frees a mount even if its server hangs: abort the FUSE connection, then lazy unmount. `bash`
 * runs one shell command to completion (default: bash -c, killed after 10 s).
 */
export function forceUnmount(mountpoint: string, bash: (command: string) => unknown = bashWithTimeout): void {
  const line = mountInfoLine(mountpoint);
  if (line === undefined) return;
  const connection = line.split(' ')[2]?.split(':')[1];
  bash(`fusermount -u -z '${mountpoint}' 2>/dev/null`);
  if (!isMounted(mountpoint)) return;
  bash(
    'mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null; ' +
      `echo 1 > /sys/fs/fuse/connections/${connection}/abort`,
  );
  bash(`umount -l '${mountpoint}'`);
}

/** Polls `condition` every 50 ms; true as soon as it holds, else its value at the timeout. */
export async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadlineMs = Date.now() + timeoutMs;
  while (Date.now() < deadlineMs) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return condition();
}
