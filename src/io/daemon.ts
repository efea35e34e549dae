// Re-running the sheep detached as a daemon, and waiting (bounded) for it to say it is up. Who owns
// a store is store-lock.ts's business.
import { spawn } from 'node:child_process';

export type DaemonOutcome = { kind: 'ready' } | { kind: 'exited'; code: number | null; stderr: string } | { kind: 'timeout' };

/**
 * Re-runs `script` with `argv` in the foreground, detached, and resolves when it says it is up
 * (an ipc 'ready'), exits first, or does neither within `readyTimeoutMs`. On a timeout the daemon
 * is killed (its whole process group) and reaped before this resolves: a launcher that reports
 * "did not start" must not leave a daemon that starts later, holding the store and the port.
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
    const timer = setTimeout(() => {
      child.removeAllListeners('exit');
      child.once('exit', () => resolve({ kind: 'timeout' }));
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, readyTimeoutMs);
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
