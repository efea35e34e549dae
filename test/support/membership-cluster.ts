// Harness for membership and recovery tests: real sheep daemons (-f) on loopback, started,
// SIGKILLed and restarted by index, plus the checks those tests need: object copies counted per
// store directory, epoch histories from `dog cluster info`, recovery log lines.
// Node i listens on basePort + i, zone i, store ROOT/s<i>; all share one local cluster directory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SheepClient } from '../../src/cli/client.js';
import {
  dogBin,
  listObjectFiles,
  md5,
  portIsFree,
  run as runProcess,
  sheepBin,
  sleep,
  spawnSheep,
  type SheepProcess,
} from './cluster.js';
import { maskDates } from './mask.js';

export { maskDates, md5, sleep };

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  out: string;
  stderr: string;
}

/** Runs a program to completion; SIGKILL at the timeout (then `signal` says so). */
export async function run(command: string, args: readonly string[], input?: Buffer, timeoutMs = 120_000): Promise<Run> {
  const result = await runProcess(command, args, { ...(input ? { input } : {}), timeoutMs });
  return { code: result.code, signal: result.signal, stdout: result.stdoutBytes, out: result.stdout, stderr: result.stderr };
}

/** `node bin/dog ARGS -p PORT`. */
export function dog(port: number, args: readonly string[], input?: Buffer, timeoutMs?: number): Promise<Run> {
  return run(process.execPath, [dogBin, ...args, '-p', String(port)], input, timeoutMs);
}

async function connects(port: number): Promise<boolean> {
  return !(await portIsFree(port));
}

/** Polls `check` every `everyMs` until it returns a truthy value; throws with `what` at the timeout. */
export async function poll<T>(what: string | (() => string), check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(everyMs);
  }
}

type Proc = SheepProcess;

/** The epoch lines of `dog cluster info`, oldest first: per epoch, the node ids (no vnodes). */
export function parseEpochHistory(text: string): Array<{ epoch: number; nodes: string[] }> {
  const records: Array<{ epoch: number; nodes: string[] }> = [];
  for (const line of text.split('\n')) {
    const match = /^\S+ \S+\s+(\d+) \[(.*)\]$/.exec(line);
    if (!match) continue;
    const nodes = match[2] === '' ? [] : match[2]!.split(', ').map((n) => n.replace(/:\d+$/, ''));
    records.push({ epoch: Number(match[1]), nodes });
  }
  return records.reverse();
}

export interface RecoveryFinished {
  epoch: number;
  received: number;
  kept: number;
}

export class MembershipCluster {
  readonly root: string;
  readonly clusterDir: string;
  private readonly procs = new Map<number, Proc>();

  constructor(readonly basePort: number, prefix = 'sheep-membership-') {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.clusterDir = path.join(this.root, 'cl');
  }

  port(i: number): number {
    return this.basePort + i;
  }
  id(i: number): string {
    return `127.0.0.1:${this.port(i)}`;
  }
  storeDir(i: number): string {
    return path.join(this.root, `s${i}`);
  }
  running(i: number): boolean {
    const proc = this.procs.get(i);
    return proc !== undefined && !proc.done;
  }
  live(): number[] {
    return [...this.procs.keys()].filter((i) => this.running(i)).sort((a, b) => a - b);
  }

  sheepArgs(i: number, extra: readonly string[] = [], clusterDir = this.clusterDir): string[] {
    return ['-f', '-b', '127.0.0.1', '-p', String(this.port(i)), '-z', String(i), '-c', `local:${clusterDir}`, '--nbd', 'off', ...extra, this.storeDir(i)];
  }

  /** Spawns sheep i; resolves once its port accepts connections (throws if it exits first). */
  async start(i: number, extra: readonly string[] = [], clusterDir?: string): Promise<void> {
    if (this.running(i)) throw new Error(`sheep ${i} is already running`);
    const proc = spawnSheep(this.sheepArgs(i, extra, clusterDir));
    this.procs.set(i, proc);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (await connects(this.port(i))) break;
      if (proc.done) throw new Error(`sheep ${i} exited while starting\n${this.diagnostics(i)}`);
      if (Date.now() > deadline) throw new Error(`sheep ${i} does not listen\n${this.diagnostics(i)}`);
      await sleep(50);
    }
    // The port opens before the join is decided: wait until the node answers as a member.
    await poll(`sheep ${i} to be a member`, async () => {
      if (proc.done) throw new Error(`sheep ${i} exited while joining\n${this.diagnostics(i)}`);
      const list = await this.ask(i, (client) => client.nodeList());
      return list?.some((node) => node.id === this.id(i)) ?? false;
    }, 20_000, 100);
  }

  /** Spawns sheep i and waits for it to exit by itself (a refused join). */
  async startExpectExit(i: number, extra: readonly string[] = [], clusterDir?: string): Promise<{ code: number | null; stderr: string; log: string }> {
    const result = await run(process.execPath, [sheepBin, ...this.sheepArgs(i, extra, clusterDir)], undefined, 30_000);
    return { code: result.code, stderr: result.stderr, log: this.log(i) };
  }

  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.procs.get(i);
    if (!proc || proc.done) return;
    proc.child.kill(signal);
    await proc.exited;
  }

  /** Sends a signal without waiting for an exit (SIGSTOP, SIGCONT). */
  signal(i: number, signal: NodeJS.Signals): void {
    const proc = this.procs.get(i);
    if (!proc || proc.done) throw new Error(`sheep ${i} is not running`);
    proc.child.kill(signal);
  }

  exited(i: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const proc = this.procs.get(i);
    if (!proc) throw new Error(`sheep ${i} never started`);
    return proc.exited;
  }

  /** SIGKILL everything still running (for afterEach); keeps the files unless `remove`. */
  async killAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((i) => this.kill(i)));
  }

  async destroy(): Promise<void> {
    await this.killAll();
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  log(i: number): string {
    try {
      return fs.readFileSync(path.join(this.storeDir(i), 'sheep.log'), 'utf8');
    } catch {
      return '';
    }
  }

  diagnostics(i: number): string {
    return `--- sheep ${i} stderr:\n${this.procs.get(i)?.stderr.join('') ?? ''}--- sheep.log tail:\n${this.log(i).split('\n').slice(-15).join('\n')}`;
  }

  /**
   * One request to sheep i over an in-process client: for polling, where spawning `dog` per poll
   * would load two cores with dozens of processes. Undefined when the sheep does not answer.
   */
  async ask<T>(i: number, request: (client: SheepClient) => Promise<T>): Promise<T | undefined> {
    const client = new SheepClient('127.0.0.1', this.port(i));
    try {
      return await request(client);
    } catch {
      return undefined;
    } finally {
      client.close();
    }
  }

  /** `dog ARGS` against sheep i; throws with stderr unless it exits 0. */
  async dogOk(i: number, args: readonly string[], input?: Buffer): Promise<Run> {
    const result = await dog(this.port(i), args, input);
    if (result.code !== 0) throw new Error(`dog ${args.join(' ')} -p ${this.port(i)} exited ${result.code}: ${result.stderr}`);
    return result;
  }

  /** Node ids from `dog node list -r` on sheep i. */
  async nodeIds(i: number): Promise<string[]> {
    const out = (await this.dogOk(i, ['node', 'list', '-r'])).out;
    return out.split('\n').filter(Boolean).map((line) => line.split(' ')[1]!);
  }

  /** Waits until every running sheep lists exactly the running sheep (asked in parallel). */
  async waitForMembers(timeoutMs = 30_000): Promise<void> {
    await poll(() => `members ${this.live().join(',')}`, async () => {
      const want = this.live().map((i) => this.id(i)).sort().join(',');
      const lists = await Promise.all(this.live().map((i) => this.ask(i, (client) => client.nodeList())));
      return lists.every((list) => list?.map((node) => node.id).sort().join(',') === want);
    }, timeoutMs);
  }

  /** `dog cluster info` on sheep i with dates masked. */
  async clusterInfo(i: number): Promise<string> {
    return maskDates((await this.dogOk(i, ['cluster', 'info'])).out);
  }

  /** The epoch history from `cluster info`, oldest first: per epoch, the node ids (no vnodes). */
  async epochHistory(i: number): Promise<Array<{ epoch: number; nodes: string[] }>> {
    return parseEpochHistory((await this.dogOk(i, ['cluster', 'info'])).out);
  }

  async status(i: number): Promise<string> {
    const text = (await this.dogOk(i, ['cluster', 'info'])).out;
    return /^Cluster status: (.*)$/m.exec(text)?.[1] ?? text;
  }

  objectFiles(i: number): string[] {
    return listObjectFiles(this.storeDir(i));
  }

  /** oid → the stores (of `stores`) that hold a file for it. */
  holders(stores: readonly number[]): Map<string, number[]> {
    const all = new Map<string, number[]>();
    for (const i of stores) for (const oid of this.objectFiles(i)) all.set(oid, [...(all.get(oid) ?? []), i]);
    return all;
  }

  /** Objects whose number of holders among `stores` is not `copies` (empty: all good). */
  badCopies(stores: readonly number[], copies: number | ((oid: string) => number)): Array<{ oid: string; holders: number[] }> {
    const want = typeof copies === 'number' ? () => copies : copies;
    return [...this.holders(stores)].filter(([oid, h]) => h.length !== want(oid)).map(([oid, holders]) => ({ oid, holders }));
  }

  /** Nobody in the cluster (asked through sheep i) is recovering: what `dog node recovery` shows as its header alone. */
  async recoveryIdle(i: number): Promise<boolean> {
    const states = await this.ask(i, (client) => client.recoveryStates());
    return states !== undefined && states.every((row) => row.state !== null && !row.state.running);
  }

  /**
   * Recovery finished everywhere: `dog node recovery` shows only its header, every object has
   * exactly `copies` holders among `stores` (stale copies removed too), and that holds on two
   * polls in a row with no change in between. Polls every 200 ms.
   */
  async waitForFullCopies(stores: readonly number[], copies: number | ((oid: string) => number), timeoutMs = 120_000, minObjects = 1): Promise<Map<string, number[]>> {
    let previous = '';
    const asker = stores.find((i) => this.running(i)) ?? stores[0]!;
    return poll(() => {
      const bad = this.badCopies(stores, copies);
      return `full copies on stores ${stores.join(',')}: ${bad.length} objects off, e.g. ${JSON.stringify(bad.slice(0, 3))}`;
    }, async () => {
      const holders = this.holders(stores);
      if (holders.size < minObjects || this.badCopies(stores, copies).length > 0 || !(await this.recoveryIdle(asker))) {
        previous = '';
        return false;
      }
      const snapshot = JSON.stringify([...holders].sort());
      if (snapshot !== previous) {
        previous = snapshot;
        return false;
      }
      // What a user sees: `dog node recovery` prints its two header lines and nothing else.
      const shown = await dog(this.port(asker), ['node', 'recovery']);
      return shown.code === 0 && shown.out.split('\n').filter(Boolean).length === 2 ? holders : false;
    }, timeoutMs);
  }

  /** The parsed "recovery finished" lines of sheep i's log, in order. */
  recoveryFinished(i: number): RecoveryFinished[] {
    return this.log(i)
      .split('\n')
      .filter((line) => line.includes('"recovery finished"'))
      .map((line) => JSON.parse(line) as RecoveryFinished);
  }

  /** md5 of `dog vdi read NAME` through sheep i. */
  async readMd5(i: number, name: string): Promise<string> {
    return md5((await this.dogOk(i, ['vdi', 'read', name])).stdout);
  }
}

/** Deterministic pseudo-random bytes (fast): a seeded xorshift over 32-bit words. */
export function pattern(bytes: number, seed: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let at = 0; at + 4 <= bytes; at += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buffer.writeUInt32LE(x, at);
  }
  return buffer;
}
