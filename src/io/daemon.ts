// The sheep process's own dealings with the operating system: the pid file that claims a store,
// and re-running itself detached as a daemon.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Claims the store: one sheep per store. Returns the pid of a live process that holds it (the
 * store is then not claimed), or undefined once our pid is written (the file rewritten whole).
 */
export function claimStore(storeDir: string): { heldBy: number; sameUser: boolean } | undefined {
  fs.mkdirSync(storeDir, { recursive: true });
  const pidFile = path.join(storeDir, 'sheep.pid');
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0);
        return { heldBy: pid, sameUser: true };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EPERM') return { heldBy: pid, sameUser: false };
      }
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  fs.writeFileSync(pidFile, `${process.pid}\n`, { flag: 'w' });
  return undefined;
}

export function releaseStore(storeDir: string): void {
  fs.rmSync(path.join(storeDir, 'sheep.pid'), { force: true });
}

export type DaemonOutcome = { kind: 'ready' } | { kind: 'exited'; code: number | null; stderr: string } | { kind: 'timeout' };

/**
 * Re-runs `script` with `argv` in the foreground, detached, and resolves when it says it is up
 * (an ipc 'ready'), exits first, or does neither within `readyTimeoutMs`.
 */
export function spawnDaemon(script: string, argv: readonly string[], readyTimeoutMs: number): Promise<DaemonOutcome> {
  const child = spawn(process.execPath, [script, ...argv], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, SHEEP_DAEMON_CHILD: '1' },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise<DaemonOutcome>((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), readyTimeoutMs);
    child.on('message', (message) => {
      if (message !== 'ready') return;
      clearTimeout(timer);
      resolve({ kind: 'ready' });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ kind: 'exited', code, stderr });
    });
  });
}
