// The one way tests start a cluster of real sheep daemons on loopback. Each sheep runs in the
// foreground (-f) as a child of the test process, so a test can SIGKILL it; its stderr is kept for
// diagnostics. `dog` runs as a child process too, exactly as a user would run it. Node i listens
// on basePort + i, zone i, store ROOT/store<i>; all share one local cluster directory, or the
// ZooKeeper of the `driver` option.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SheepClient } from '../../src/rpc/sheep-client.js';
import { maskDates } from './mask.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sheepBin = path.join(repoRoot, 'bin', 'sheep');
export const dogBin = path.join(repoRoot, 'bin', 'dog');

const dogTimeoutMs = 120_000;
const portWaitMs = 15_000;
const stopWaitMs = 5_000;
const joinWaitMs = 20_000;

export interface DogResult {
  stdout: Buffer;
  stderr: string;
  /** Exit code; null when killed by a signal (e.g. the timeout). */
  code: number | null;
  /** stdout as text. */
  out: string;
}

export interface DogOptions {
  input?: Buffer;
  /** -a: the sheep's address (default: dog's own, 127.0.0.1). */
  address?: string;
  port?: number;
  timeoutMs?: number;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a program to completion (or kills it at the timeout). */
export function run(
  command: string,
  args: readonly string[],
  options: { input?: Buffer; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ProcessResult & { stdoutBytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? repoRoot, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? dogTimeoutMs);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString(), stdoutBytes, stderr: Buffer.concat(err).toString(), timedOut });
    });
    // The child may exit before reading all of stdin (e.g. a write of LEN bytes): ignore EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? Buffer.alloc(0));
  });
}

/** `node bin/dog ARGS -p PORT`, stdin from `input` (empty by default). */
export async function dog(args: readonly string[], options: DogOptions & { defaultPort?: number } = {}): Promise<DogResult> {
  const port = options.port ?? options.defaultPort;
  const full = [...args, ...(port === undefined ? [] : ['-p', String(port)]), ...(options.address ? ['-a', options.address] : [])];
  const result = await run(process.execPath, [dogBin, ...full], {
    ...(options.input ? { input: options.input } : {}),
    timeoutMs: options.timeoutMs ?? dogTimeoutMs,
  });
  if (result.timedOut) throw new Error(`dog ${full.join(' ')} timed out\nstderr: ${result.stderr}`);
  return { stdout: result.stdoutBytes, out: result.stdout, stderr: result.stderr, code: result.code };
}

/** `node bin/sheep ARGS`, to completion: for option errors and refused starts. */
export function runSheep(args: readonly string[], timeoutMs = 20_000): Promise<ProcessResult> {
  return run(process.execPath, [sheepBin, ...args], { timeoutMs });
}

export function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once something accepts TCP connections on the port (of `host`, loopback by default). */
export async function waitForPort(port: number, timeoutMs = portWaitMs, alive: () => boolean = () => true, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process meant to listen on ${port} exited`);
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** True if nothing listens on the port (a quick connect is refused). */
export async function portIsFree(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Polls `check` every `everyMs` until it returns a truthy value; throws with `what` at the timeout. */
export async function poll<T>(
  what: string | (() => string),
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(everyMs);
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

interface SheepProcess {
  child: ChildProcess;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
}

/**
 * Spawns `node bin/sheep ARGS` (stdout ignored, stderr kept); `done` turns true once it exits.
 * With `openFiles`, under `ulimit -n` of that (bash execs node, so the pid is the sheep's). The
 * `wrap` of a placement (e.g. nsenter) must exec its command too.
 */
function spawnSheep(args: readonly string[], openFiles?: number, wrap: readonly string[] = []): SheepProcess {
  const [command, argv] =
    openFiles === undefined
      ? [process.execPath, [sheepBin, ...args]]
      : ['bash', ['-c', `ulimit -n ${openFiles} && exec "$@"`, 'sheep', process.execPath, sheepBin, ...args]];
  const [program, ...rest] = [...wrap, command, ...argv];
  const child = spawn(program!, rest, { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (text: string) => stderr.push(text));
  const proc: SheepProcess = {
    child,
    stderr,
    done: false,
    exited: new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        proc.done = true;
        resolve({ code, signal });
      }),
    ),
  };
  return proc;
}

/** Object file names (16 hex digits) in a store directory, sorted; none if it has no obj/ yet. */
function listObjectFiles(storeDir: string): string[] {
  try {
    return fs
      .readdirSync(path.join(storeDir, 'obj'))
      .filter((name) => /^[0-9a-f]{16}$/.test(name))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** Where a node runs: the address it listens on and the command prefix that runs a program there. */
export interface NodePlace {
  address: string;
  /** Prepended to the sheep's command line (must exec it); none for this host. */
  wrap: readonly string[];
}

export interface ClusterOptions {
  /** Sheep i listens on basePort + i. */
  basePort: number;
  /** Where sheep i runs (test/support/netns-hosts.ts); default: 127.0.0.1 of this host. */
  place?: (i: number) => NodePlace;
  /** Directory prefix in the OS temp dir. */
  prefix?: string;
  /** Extra sheep options per node. */
  sheepArgs?: (i: number) => string[];
  /** The open-files limit (ulimit -n) a node runs under; undefined: the test's own. */
  openFiles?: (i: number) => number | undefined;
  /** Where a node's store lives; undefined: ROOT/store<i>. */
  storeDir?: (i: number) => string | undefined;
  /** A multi-disk node's object disks (`STORE,DISK1,DISK2…`); none: STORE/obj. */
  diskDirs?: (i: number) => readonly string[];
  /** The cluster driver (`-c`), e.g. zookeeper:127.0.0.1:12182; default local on ROOT/cluster. */
  driver?: string;
}

export interface StartClusterOptions extends ClusterOptions {
  nodes: number;
  /** Copies given to `cluster format`. */
  copies?: number;
  /** Run `dog cluster format` after start (default true). */
  format?: boolean;
}

export interface RecoveryFinished {
  epoch: number;
  received: number;
  kept: number;
}

export class Cluster {
  readonly root: string;
  readonly clusterDir: string;
  private readonly procs = new Map<number, SheepProcess>();

  constructor(readonly options: ClusterOptions) {
    this.root = makeTempDir(options.prefix ?? 'sheep-test-');
    this.clusterDir = path.join(this.root, 'cluster');
  }

  // ---- nodes ----

  storeDir(i: number): string {
    return this.options.storeDir?.(i) ?? path.join(this.root, `store${i}`);
  }

  port(i: number): number {
    return this.options.basePort + i;
  }

  address(i: number): string {
    return this.options.place?.(i).address ?? '127.0.0.1';
  }

  /** The id a node has in `node list`: `ADDRESS:PORT`. */
  nodeId(i: number): string {
    return `${this.address(i)}:${this.port(i)}`;
  }

  /** Every node ever started, by index. */
  started(): number[] {
    return [...this.procs.keys()].sort((a, b) => a - b);
  }

  /** The ports of every node ever started, by index. */
  get ports(): number[] {
    return this.started().map((i) => this.port(i));
  }

  running(i: number): boolean {
    const proc = this.procs.get(i);
    return proc !== undefined && !proc.done;
  }

  live(): number[] {
    return this.started().filter((i) => this.running(i));
  }

  pid(i: number): number | undefined {
    return this.procs.get(i)?.child.pid;
  }

  sheepArgs(i: number, extra: readonly string[] = [], clusterDir = this.clusterDir): string[] {
    return [
      '-f',
      '-b', this.address(i),
      '-p', String(this.port(i)),
      '-z', String(i),
      '-c', this.options.driver !== undefined && clusterDir === this.clusterDir ? this.options.driver : `local:${clusterDir}`,
      '--nbd', 'off',
      ...(this.options.sheepArgs?.(i) ?? []),
      ...extra,
      [this.storeDir(i), ...(this.options.diskDirs?.(i) ?? [])].join(','),
    ];
  }

  // ---- processes ----

  /**
   * Spawns sheep i and resolves once it answers as a member (the port opens before the join is
   * decided); throws with its diagnostics if it exits first.
   */
  async start(i: number, extra: readonly string[] = [], clusterDir?: string): Promise<void> {
    if (this.running(i)) throw new Error(`sheep ${i} is already running`);
    const proc = spawnSheep(this.sheepArgs(i, extra, clusterDir), this.options.openFiles?.(i), this.options.place?.(i).wrap);
    this.procs.set(i, proc);
    try {
      await waitForPort(this.port(i), portWaitMs, () => !proc.done, this.address(i));
    } catch (error) {
      throw new Error(`sheep ${i} did not start: ${(error as Error).message}\n${this.diagnostics(i)}`);
    }
    await poll(`sheep ${i} to be a member`, async () => {
      if (proc.done) throw new Error(`sheep ${i} exited while joining\n${this.diagnostics(i)}`);
      const list = await this.ask(i, (client) => client.nodeList());
      return list?.some((node) => node.id === this.nodeId(i)) ?? false;
    }, joinWaitMs, 100);
  }

  /**
   * Starts the nodes, then waits until all are members: 'in order' one after the other (the
   * first founds the cluster), or 'at once' (membership order does not matter before format).
   */
  async startAll(indexes: readonly number[], how: 'in order' | 'at once' = 'in order'): Promise<void> {
    if (how === 'at once') await Promise.all(indexes.map((i) => this.start(i)));
    else for (const i of indexes) await this.start(i);
    await this.waitForMembers();
  }

  /** Runs sheep i to its exit (a refused start or join). */
  async startExpectExit(i: number, extra: readonly string[] = [], clusterDir?: string): Promise<{ code: number | null; stderr: string; log: string }> {
    const result = await runSheep(this.sheepArgs(i, extra, clusterDir), 30_000);
    return { code: result.code, stderr: result.stderr, log: this.log(i) };
  }

  /** Sends a signal to sheep i; by default waits for it to exit. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL', wait = true): Promise<void> {
    const proc = this.procs.get(i);
    if (!proc || proc.done) return;
    proc.child.kill(signal);
    if (wait) await proc.exited;
  }

  /** Waits for sheep i to exit by itself; returns how. */
  exited(i: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const proc = this.procs.get(i);
    if (!proc) throw new Error(`sheep ${i} never started`);
    return proc.exited;
  }

  /** SIGTERM every sheep, SIGKILL what is left after a while, remove the temp dir. */
  async stop(keepFiles = false): Promise<void> {
    const live = [...this.procs.values()].filter((p) => !p.done);
    for (const proc of live) proc.child.kill('SIGTERM');
    await Promise.race([Promise.all(live.map((p) => p.exited)), sleep(stopWaitMs)]);
    for (const proc of live) if (!proc.done) proc.child.kill('SIGKILL');
    await Promise.all(live.map((p) => p.exited));
    if (!keepFiles) fs.rmSync(this.root, { recursive: true, force: true });
  }

  /** SIGKILL every sheep at once and remove the temp dir (for afterEach). */
  async destroy(): Promise<void> {
    await Promise.all(this.started().map((i) => this.kill(i)));
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  log(i: number): string {
    try {
      return fs.readFileSync(path.join(this.storeDir(i), 'sheep.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Everything sheep i wrote to stderr, and the tail of its log. */
  diagnostics(i: number): string {
    const stderr = this.procs.get(i)?.stderr.join('') ?? '';
    const tail = this.log(i).split('\n').slice(-20).join('\n');
    return `--- sheep ${i} (port ${this.port(i)}) stderr:\n${stderr}--- sheep.log tail:\n${tail}`;
  }

  // ---- requests ----

  /**
   * One request to sheep i over an in-process client: for polling, where spawning `dog` per poll
   * would load two cores with dozens of processes. Undefined when the sheep does not answer.
   */
  async ask<T>(i: number, request: (client: SheepClient) => Promise<T>): Promise<T | undefined> {
    const client = new SheepClient(this.address(i), this.port(i));
    try {
      return await request(client);
    } catch {
      return undefined;
    } finally {
      client.close();
    }
  }

  /** `dog ARGS` against sheep 0 unless `port` says otherwise (at the address of that port's node). */
  dog(args: readonly string[], options: DogOptions = {}): Promise<DogResult> {
    const port = options.port ?? this.port(0);
    const address = options.address ?? (this.options.place ? this.address(port - this.options.basePort) : undefined);
    return dog(args, { ...options, port, ...(address !== undefined ? { address } : {}) });
  }

  /**
   * Runs dog and fails unless it exits 0: the message is dog's exit and stderr (tests match it),
   * the sheep's diagnostics come as its cause.
   */
  async dogOk(args: readonly string[], options: DogOptions = {}): Promise<DogResult> {
    const result = await this.dog(args, options);
    if (result.code !== 0) {
      const port = options.port ?? this.port(0);
      const diagnostics = new Error(this.started().map((i) => this.diagnostics(i)).join('\n'));
      throw new Error(`dog ${args.join(' ')} -p ${port} exited ${result.code}: ${result.stderr}`, {
        cause: diagnostics,
      });
    }
    return result;
  }

  /** Waits until every running sheep lists exactly the running sheep (asked in parallel). */
  async waitForMembers(timeoutMs = 30_000): Promise<void> {
    await poll(() => `members ${this.live().join(',')}`, async () => {
      const want = this.live().map((i) => this.nodeId(i)).sort().join(',');
      const lists = await Promise.all(this.live().map((i) => this.ask(i, (client) => client.nodeList())));
      return lists.every((list) => list?.map((node) => node.id).sort().join(',') === want);
    }, timeoutMs);
  }

  /** Node ids from `dog node list -r` on sheep i. */
  async nodeIds(i: number): Promise<string[]> {
    const out = (await this.dogOk(['node', 'list', '-r'], { port: this.port(i) })).out;
    return out.split('\n').filter(Boolean).map((line) => line.split(' ')[1]!);
  }

  /** `dog cluster info` on sheep i with dates masked. */
  async clusterInfo(i: number): Promise<string> {
    return maskDates((await this.dogOk(['cluster', 'info'], { port: this.port(i) })).out);
  }

  /** The epoch history from `cluster info`, oldest first: per epoch, the node ids (no vnodes). */
  async epochHistory(i: number): Promise<Array<{ epoch: number; nodes: string[] }>> {
    return parseEpochHistory((await this.dogOk(['cluster', 'info'], { port: this.port(i) })).out);
  }

  async status(i: number): Promise<string> {
    const text = (await this.dogOk(['cluster', 'info'], { port: this.port(i) })).out;
    return /^Cluster status: (.*)$/m.exec(text)?.[1] ?? text;
  }

  /** md5 of `dog vdi read NAME` through sheep i. */
  async readMd5(i: number, name: string): Promise<string> {
    return md5((await this.dogOk(['vdi', 'read', name], { port: this.port(i) })).stdout);
  }

  // ---- stores ----

  /** Object file names (16 hex digits) in sheep i's store, sorted. */
  objectFiles(i: number): string[] {
    return listObjectFiles(this.storeDir(i));
  }

  objectPath(i: number, oid: string): string {
    return path.join(this.storeDir(i), 'obj', oid);
  }

  /** md5 of an object file, or undefined when sheep i has no such file. */
  objectHash(i: number, oid: string): string | undefined {
    try {
      return md5(fs.readFileSync(this.objectPath(i, oid)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Which stores hold a file for `oid`. */
  holders(oid: string): number[] {
    return this.started().filter((i) => fs.existsSync(this.objectPath(i, oid)));
  }

  /** Every object file of the stores (all by default): oid → indexes of the stores holding it. */
  allObjects(stores: readonly number[] = this.started()): Map<string, number[]> {
    const all = new Map<string, number[]>();
    for (const i of stores) for (const oid of this.objectFiles(i)) all.set(oid, [...(all.get(oid) ?? []), i]);
    return all;
  }

  /** Objects whose number of holders among `stores` is not `copies` (empty: all good). */
  badCopies(stores: readonly number[], copies: number | ((oid: string) => number)): Array<{ oid: string; holders: number[] }> {
    const want = typeof copies === 'number' ? () => copies : copies;
    return [...this.allObjects(stores)].filter(([oid, h]) => h.length !== want(oid)).map(([oid, holders]) => ({ oid, holders }));
  }

  // ---- recovery ----

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
      const holders = this.allObjects(stores);
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
      const shown = await this.dog(['node', 'recovery'], { port: this.port(asker) });
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
}

/** Creates a cluster, starts nodes 0..nodes-1 and formats; on a failed start, stops what did start. */
export async function startCluster(options: StartClusterOptions): Promise<Cluster> {
  const cluster = new Cluster(options);
  try {
    await cluster.startAll(Array.from({ length: options.nodes }, (_, i) => i));
    if (options.format !== false) {
      const result = await cluster.dogOk(['cluster', 'format', '-c', String(options.copies ?? 3)]);
      if (result.out !== 'using backend plain store\n') throw new Error(`format said: ${result.out}`);
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
