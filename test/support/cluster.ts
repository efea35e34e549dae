// A cluster of real sheep daemons on loopback, for integration tests. Each sheep runs in the
// foreground (-f) as a child of the test process, so a test can SIGKILL it; its stderr is kept for
// diagnostics. `dog` runs as a child process too, exactly as a user would run it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sheepBin = path.join(repoRoot, 'bin', 'sheep');
export const dogBin = path.join(repoRoot, 'bin', 'dog');

const dogTimeoutMs = 60_000;
const portWaitMs = 15_000;
const stopWaitMs = 5_000;

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
  options: { input?: Buffer; timeoutMs?: number; cwd?: string } = {},
): Promise<ProcessResult & { stdoutBytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
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
  const full = port === undefined ? [...args] : [...args, '-p', String(port)];
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

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs = portWaitMs, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
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

export interface SheepProcess {
  child: ChildProcess;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
}

/** Spawns `node bin/sheep ARGS` (stdout ignored, stderr kept); `done` turns true once it exits. */
export function spawnSheep(args: readonly string[]): SheepProcess {
  const child = spawn(process.execPath, [sheepBin, ...args], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
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
export function listObjectFiles(storeDir: string): string[] {
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

export interface ClusterOptions {
  nodes: number;
  /** Copies given to `cluster format`. */
  copies?: number;
  /** Sheep i listens on basePort + i. */
  basePort: number;
  /** Run `dog cluster format` after start (default true). */
  format?: boolean;
  /** Extra sheep options per node. */
  sheepArgs?: (i: number) => string[];
  /** Directory prefix in the OS temp dir. */
  prefix?: string;
}

export class Cluster {
  readonly root: string;
  readonly clusterDir: string;
  readonly ports: number[];
  private readonly procs: Array<SheepProcess | undefined>;

  constructor(readonly options: ClusterOptions) {
    this.root = makeTempDir(options.prefix ?? 'sheep-test-');
    this.clusterDir = path.join(this.root, 'cluster');
    this.ports = Array.from({ length: options.nodes }, (_, i) => options.basePort + i);
    this.procs = Array.from({ length: options.nodes }, () => undefined);
  }

  storeDir(i: number): string {
    return path.join(this.root, `store${i}`);
  }

  port(i: number): number {
    return this.ports[i]!;
  }

  /** The id a node has in `node list`: `127.0.0.1:PORT`. */
  nodeId(i: number): string {
    return `127.0.0.1:${this.port(i)}`;
  }

  sheepArgs(i: number): string[] {
    return [
      '-f',
      '-b', '127.0.0.1',
      '-p', String(this.port(i)),
      '-z', String(i),
      '-c', `local:${this.clusterDir}`,
      '--nbd', 'off',
      ...(this.options.sheepArgs?.(i) ?? []),
      this.storeDir(i),
    ];
  }

  /** Starts sheep i in the foreground and waits until its port accepts connections. */
  async start(i: number): Promise<void> {
    if (this.procs[i] && !this.procs[i]!.done) throw new Error(`sheep ${i} is already running`);
    const proc = spawnSheep(this.sheepArgs(i));
    this.procs[i] = proc;
    try {
      await waitForPort(this.port(i), portWaitMs, () => !proc.done);
    } catch (error) {
      throw new Error(`sheep ${i} did not start: ${(error as Error).message}\n${this.diagnostics(i)}`);
    }
  }

  /** Sends a signal to sheep i; with SIGKILL (and by default) waits for it to exit. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL', wait = true): Promise<void> {
    const proc = this.procs[i];
    if (!proc || proc.done) return;
    proc.child.kill(signal);
    if (wait) await proc.exited;
  }

  /** Waits for sheep i to exit by itself; returns how. */
  async exited(i: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const proc = this.procs[i];
    if (!proc) throw new Error(`sheep ${i} never started`);
    return proc.exited;
  }

  running(i: number): boolean {
    const proc = this.procs[i];
    return proc !== undefined && !proc.done;
  }

  pid(i: number): number | undefined {
    return this.procs[i]?.child.pid;
  }

  /** Everything sheep i wrote to stderr, and the tail of its log. */
  diagnostics(i: number): string {
    let text = `--- sheep ${i} (port ${this.port(i)}) stderr:\n${this.procs[i]?.stderr.join('') ?? ''}`;
    try {
      const log = fs.readFileSync(path.join(this.storeDir(i), 'sheep.log'), 'utf8');
      text += `--- sheep.log tail:\n${log.split('\n').slice(-20).join('\n')}`;
    } catch {
      // no log yet
    }
    return text;
  }

  /** `dog ARGS` against sheep 0 unless `port` says otherwise. */
  dog(args: readonly string[], options: DogOptions = {}): Promise<DogResult> {
    return dog(args, { ...options, defaultPort: this.port(0) });
  }

  /** Runs dog and fails the test (with the sheep's diagnostics) unless it exits 0. */
  async dogOk(args: readonly string[], options: DogOptions = {}): Promise<DogResult> {
    const result = await this.dog(args, options);
    if (result.code !== 0) {
      const diag = this.procs.map((_, i) => this.diagnostics(i)).join('\n');
      throw new Error(`dog ${args.join(' ')} exited ${result.code}: ${result.stderr}\n${diag}`);
    }
    return result;
  }

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
    return this.ports.map((_, i) => i).filter((i) => fs.existsSync(this.objectPath(i, oid)));
  }

  /** Every object file of every store: oid → indexes of the stores holding it. */
  allObjects(): Map<string, number[]> {
    const all = new Map<string, number[]>();
    this.ports.forEach((_, i) => {
      for (const oid of this.objectFiles(i)) all.set(oid, [...(all.get(oid) ?? []), i]);
    });
    return all;
  }

  /** Starts every sheep (in order: the first one founds the cluster) and formats. */
  async startAll(): Promise<void> {
    for (let i = 0; i < this.options.nodes; i++) await this.start(i);
    await this.waitForMembers(this.options.nodes);
    if (this.options.format !== false) {
      const result = await this.dogOk(['cluster', 'format', '-c', String(this.options.copies ?? 3)]);
      if (result.out !== 'using backend plain store\n') throw new Error(`format said: ${result.out}`);
    }
  }

  /** Waits until `node list` on every running sheep shows `count` nodes. */
  async waitForMembers(count: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let ok = true;
      for (let i = 0; i < this.options.nodes && ok; i++) {
        if (!this.running(i)) continue;
        const result = await dog(['node', 'list', '-r'], { port: this.port(i) });
        ok = result.code === 0 && result.out.split('\n').filter(Boolean).length === count;
      }
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`the cluster did not reach ${count} members in ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** SIGTERM every sheep, SIGKILL what is left after a while, remove the temp dir. */
  async stop(keepFiles = false): Promise<void> {
    const live = this.procs.filter((p): p is SheepProcess => p !== undefined && !p.done);
    for (const proc of live) proc.child.kill('SIGTERM');
    await Promise.race([Promise.all(live.map((p) => p.exited)), sleep(stopWaitMs)]);
    for (const proc of live) if (!proc.done) proc.child.kill('SIGKILL');
    await Promise.all(live.map((p) => p.exited));
    if (!keepFiles) fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Creates, starts and formats a cluster; on a failed start, stops what did start. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const cluster = new Cluster(options);
  try {
    await cluster.startAll();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
