// Runs cluster members as real OS processes (test/support/driver-child.ts, bundled once with
// esbuild so each child starts as plain `node` in tens of milliseconds) and records what they see.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export interface ChildRecord {
  ev: string;
  atMs: number;
  /** When the parent read the line. */
  seenAtMs: number;
  [key: string]: unknown;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** Bundles the child script into `outDir`; returns the path of the runnable .mjs. */
export async function buildChild(outDir: string): Promise<string> {
  const outfile = path.join(outDir, 'driver-child.mjs');
  await build({
    entryPoints: [path.join(here, 'driver-child.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export class Member {
  readonly records: ChildRecord[] = [];
  readonly stderr: string[] = [];
  readonly id: string;
  private readonly child: ChildProcess;
  private readonly listeners = new Set<() => void>();
  private exited = false;

  constructor(script: string, driverSpec: string, port: number, refused: readonly string[] = [], slowJoinerId = '') {
    this.id = `127.0.0.1:${port}`;
    const args = [script, driverSpec, String(port), refused.join(','), slowJoinerId];
    this.child = spawn(process.execPath, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let buffered = '';
    this.child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      buffered += text;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        this.records.push({ ...(JSON.parse(line) as ChildRecord), seenAtMs: Date.now() });
      }
      for (const listener of this.listeners) listener();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (text: string) => this.stderr.push(text));
    this.child.on('exit', () => {
      this.exited = true;
      for (const listener of this.listeners) listener();
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  send(command: string): void {
    this.child.stdin?.write(`${command}\n`);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  /** SIGSTOP or SIGCONT: a member that hangs, then wakes. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.child.kill(signal);
  }

  /** The cluster events (join, leave, notify), without the local ones (check_join, granted...). */
  clusterEvents(): Array<Record<string, unknown>> {
    return this.records
      .filter((r) => r.ev === 'join' || r.ev === 'leave' || r.ev === 'notify')
      .map(({ atMs: _atMs, seenAtMs: _seenAtMs, ...rest }) => rest);
  }

  /** Resolves with the first defined value of `probe`, re-evaluated on every new record. */
  waitUntil<T>(probe: () => T | undefined, timeoutMs = 5000, what = 'record'): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      const listener = (): void => {
        const value = probe();
        if (value !== undefined) {
          finish();
          resolve(value);
        } else if (this.exited) {
          finish();
          reject(new Error(`${this.id} exited before ${what}; stderr: ${this.stderr.join('').slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.id}: no ${what} within ${timeoutMs} ms; stderr: ${this.stderr.join('').slice(-2000)}`));
      }, timeoutMs);
      this.listeners.add(listener);
      listener();
    });
  }

  waitFor(match: (record: ChildRecord) => boolean, timeoutMs = 5000, what = 'record'): Promise<ChildRecord> {
    return this.waitUntil(() => this.records.find(match), timeoutMs, what);
  }

  /** Waits until `count` records match. */
  waitForCount(match: (record: ChildRecord) => boolean, count: number, timeoutMs = 5000): Promise<number> {
    const reached = (): number | undefined => {
      const seen = this.records.filter(match).length;
      return seen >= count ? seen : undefined;
    };
    return this.waitUntil(reached, timeoutMs, `${count} matching records`);
  }

  /** Sends a command and waits for its completion record. */
  run(command: string, timeoutMs = 5000): Promise<ChildRecord> {
    const name = command.split(' ')[0] ?? command;
    const dones = (): ChildRecord[] => this.records.filter((r) => (r.ev === 'done' || r.ev === 'error') && r.cmd === name);
    const before = dones().length;
    this.send(command);
    return this.waitUntil(() => dones()[before], timeoutMs, `done ${command}`);
  }

  waitExit(timeoutMs = 5000): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.id} did not exit`)), timeoutMs);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  stop(): void {
    if (!this.exited) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGKILL');
    }
  }
}
