// Who owns a store (issue #12 item 10), on real sheep processes: the holder of the flock on
// STORE/sheep.pid, never a pid guess. A stale pid file, a pid reused by another process and a
// SIGKILLed sheep lingering as a zombie must not block a restart; a live sheep still refuses a
// second one; a launcher that gives up on its daemon leaves no daemon behind. Ports 8000-8009.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, poll, runSheep, sheepBin } from './support/cluster.js';

let clusters: Cluster[] = [];
const cleanups: Array<() => void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  const done = clusters;
  clusters = [];
  await Promise.all(done.map((c) => c.destroy()));
});

function cluster(basePort: number): Cluster {
  const c = new Cluster({ basePort, prefix: 'sheep-owner-' });
  clusters.push(c);
  return c;
}

/** The state letter of /proc/PID/stat ('Z' for a zombie), or undefined once the pid is gone. */
function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** The pid in STORE/sheep.pid, or undefined while there is none. */
function pidInFile(store: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(store, 'sheep.pid'), 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

describe('store ownership', () => {
  it('starts over a stale pid file naming a live process that is not a sheep (pid 1)', async () => {
    const c = cluster(8000);
    fs.mkdirSync(c.storeDir(0), { recursive: true });
    fs.writeFileSync(path.join(c.storeDir(0), 'sheep.pid'), '1\n');
    await c.start(0);
    expect(pidInFile(c.storeDir(0))).toBe(c.pid(0));
    // While it runs, the store is its own: a second sheep is refused with one line naming it.
    const second = await runSheep(c.sheepArgs(0, ['-p', '8009']));
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`sheep: store ${c.storeDir(0)} is in use by sheep pid ${c.pid(0)}\n`);
  });

  it('restarts at once over a SIGKILLed sheep that lingers as a zombie', async () => {
    const c = cluster(8002);
    // A parent that never reaps: the killed sheep stays a zombie whose pid kill(pid, 0) still finds.
    const args = c.sheepArgs(0).map((arg) => `'${arg}'`).join(' ');
    const parent = spawn('sh', ['-c', `'${process.execPath}' '${sheepBin}' ${args} 2>/dev/null & echo $!; exec sleep 600`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    cleanups.push(() => parent.kill('SIGKILL'));
    const sheepPid = await new Promise<number>((resolve) => parent.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
    cleanups.push(() => killQuietly(sheepPid));
    await poll('the first sheep to hold its store', () => pidInFile(c.storeDir(0)) === sheepPid, 15_000, 50);
    await poll('the first sheep to listen', () => c.ask(0, (client) => client.nodeList()), 15_000, 100);
    process.kill(sheepPid, 'SIGKILL');
    await poll('the killed sheep to be a zombie', () => procState(sheepPid) === 'Z', 5000, 20);
    process.kill(sheepPid, 0); // a zombie: "alive" to a pid check, which is why ownership is a lock
    await c.start(0);
    expect(procState(sheepPid)).toBe('Z');
    expect(pidInFile(c.storeDir(0))).toBe(c.pid(0));
  });

  it('stops the daemon when its launcher gives up waiting for it', async () => {
    const c = cluster(8004);
    const store = c.storeDir(0);
    const args = c.sheepArgs(0).filter((arg) => arg !== '-f');
    const launcher = runSheep(['--start-timeout', '2', ...args], 30_000);
    // The daemon writes its pid once it holds the store; stop it there so it cannot get ready.
    const daemonPid = await poll('the daemon to hold its store', () => pidInFile(store), 15_000, 5);
    process.kill(daemonPid, 'SIGSTOP');
    cleanups.push(() => killQuietly(daemonPid));
    const result = await launcher;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('sheep: the daemon did not start within 2 s; it was stopped\n');
    expect(procState(daemonPid)).toBeUndefined(); // killed and reaped by the launcher
    // And the store is free again.
    await c.start(0);
  });
});
