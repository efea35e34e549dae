// Helpers shared by the benchmarks in bench/: running a command and timing it, medians, the temp
// dir, the data file, daemons (sheep, qemu-nbd, FUSE servers) and the table at the end.
// Not a benchmark itself: bench/run.mjs runs only *.bench.mjs files.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const dogBin = path.join(repo, 'bin', 'dog');
export const sheepBin = path.join(repo, 'bin', 'sheep');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** BENCH_SIZE text: bytes, or a number with a K, M or G suffix (binary). */
export function parseSize(text) {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  if (!match) throw new Error(`BENCH_SIZE '${text}': expected bytes or a number with K, M or G`);
  return Number(match[1]) * 1024 ** ' KMG'.indexOf((match[2] || ' ').toUpperCase());
}

/** A size in GiB as the benchmark headers print it: whole when whole, else two decimals. */
export const gibText = (size) => (size / 2 ** 30).toFixed(size % 2 ** 30 ? 2 : 0);

/** A fresh temp dir under BENCH_DIR (default os.tmpdir()). */
export const makeTmp = (prefix) => fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), prefix));

/** Removes the temp dir, or with BENCH_KEEP=1 (or `keep`) says where it is. */
export function removeTmp(tmp, keep = process.env.BENCH_KEEP === '1') {
  if (keep) console.log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}

/** On SIGINT/SIGTERM: print `message(signal)` (if given), clean up, exit 130. */
/** `work` run at most once: every call after the first waits for that same run (teardown from a signal and from main's end). */
export function runOnce(work) {
  let running;
  return () => (running ??= work());
}

export function exitOnSignals(cleanup, message) {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      if (message) console.error(message(signal));
      void cleanup().then(() => process.exit(130));
    });
  }
}

const lastStderrLine = ({ command, args, err, code, signal }) =>
  `${path.basename(command)} ${args.join(' ')}: ${err.trim().split('\n').pop() || `exit ${code ?? signal}`}`;

/**
 * Runs a command; resolves with wall seconds, stdout (if piped; at most about 1 MiB kept), stderr,
 * the stdout byte count and, with `hash`, the md5 of stdout instead of its text. Rejects on a
 * non-zero exit with `describeFailure(...)` (default: the command and the last stderr line).
 * stdin/stdout: 'ignore'/'pipe', a file path, or an fd. `timeoutMs`: SIGKILL after that long.
 */
export function run(command, args, { stdin = 'ignore', stdout = 'pipe', hash = false, timeoutMs, describeFailure = lastStderrLine } = {}) {
  return new Promise((resolve, reject) => {
    const inFd = typeof stdin === 'string' && stdin !== 'ignore' ? fs.openSync(stdin, 'r') : stdin;
    const outFd = typeof stdout === 'string' && stdout !== 'pipe' ? fs.openSync(stdout, 'w') : stdout;
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: [inFd, outFd, 'pipe'] });
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const md5 = hash ? createHash('md5') : undefined;
    let out = '';
    let err = '';
    let bytes = 0;
    if (child.stdout) {
      child.stdout.on('data', (chunk) => {
        bytes += chunk.length;
        if (md5) md5.update(chunk);
        else if (out.length < 1 << 20) out += chunk.toString();
      });
    }
    child.stderr.on('data', (chunk) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (typeof inFd === 'number') fs.closeSync(inFd);
      if (typeof outFd === 'number') fs.closeSync(outFd);
      if (code !== 0) {
        reject(new Error(describeFailure({ command, args, err, code, signal })));
        return;
      }
      resolve({ seconds, out, err, bytes, md5: md5?.digest('hex') });
    });
  });
}

/** `dog ARGS [-a ADDR] -p PORT` argv for process.execPath. */
export const dogArgv = (args, port, addr) => [dogBin, ...args, ...(addr === undefined ? [] : ['-a', addr]), '-p', String(port)];

/** Sheep options for node `zone` of a local-driver cluster, in the foreground. */
export const sheepArgv = ({ addr, port, zone, clusterDir, store, nbd = 'off' }) => [
  '-f', '-b', addr, '-p', String(port), '-z', String(zone), '--nbd', nbd, '-c', `local:${clusterDir}`, store,
];

/**
 * A long-running child (stdout ignored, stderr kept): `child.exited` resolves with
 * { code, signal, err } once it exits. Pushed onto `list` when given.
 */
export function spawnDaemon(command, args, list) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (chunk) => (err += chunk.toString()));
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, err })));
  list?.push(child);
  return child;
}

const running = (child) => child.exitCode === null && child.signalCode === null;

/** Sends `signal` to every child still running; SIGKILLs what is left after `graceMs`. */
export async function stopDaemons(children, signal = 'SIGTERM', graceMs = 10_000) {
  for (const child of children) if (running(child)) child.kill(signal);
  const gone = Promise.all(children.map((child) => child.exited));
  if ((await Promise.race([gone, sleep(graceMs).then(() => 'timeout')])) === 'timeout') {
    for (const child of children) if (running(child)) child.kill('SIGKILL');
    await gone;
  }
}

const counted = ['no', 'one', 'two', 'three', 'four', 'five'];

/**
 * Polls `dog node list -r` (through `dog`) until `count` nodes show, then formats with 3 copies.
 * Throws if one of `children` exits first, or after 30 s.
 */
export async function joinAndFormat(dog, { addr, count, children = [], logs }) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const child of children) {
      if (child.exitCode !== null) throw new Error(`a sheep exited while starting: ${(await child.exited).err.trim() || `exit ${child.exitCode}`}`);
    }
    try {
      const { out } = await dog(['node', 'list', '-r']);
      if (out.trim().split('\n').filter((line) => line.includes(`${addr}:`)).length === count) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`the ${counted[count] ?? count} sheep did not all join within 30 s${logs ? ` (logs in ${logs})` : ''}`);
    await sleep(200);
  }
  await dog(['cluster', 'format', '-c', '3']);
}

/** True if something accepts TCP connections on addr:port. */
export function portOpen(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Waits (30 s at most) until `child` listens on the port; throws if it exits first. */
export async function waitForPort(port, child, what, host = '127.0.0.1') {
  const deadline = Date.now() + 30_000;
  while (!(await portOpen(port, host))) {
    if (!running(child)) throw new Error(`${what} exited: ${(await child.exited).err.trim()}`);
    if (Date.now() > deadline) throw new Error(`${what} does not listen on ${port} after 30 s`);
    await sleep(100);
  }
}

/**
 * Writes `size` random bytes to `file`, `chunkBytes` at a time; resolves with their md5 when
 * `md5` is set. The file then sits in page cache.
 */
export function writeRandomFile(file, size, { chunkBytes = 4 << 20, md5 = false } = {}) {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(chunkBytes);
  const hash = md5 ? createHash('md5') : undefined;
  for (let done = 0; done < size; done += chunk.length) {
    const piece = Math.min(chunk.length, size - done);
    randomFillSync(chunk, 0, piece);
    hash?.update(chunk.subarray(0, piece));
    fs.writeSync(fd, chunk, 0, piece);
  }
  fs.closeSync(fd);
  return hash?.digest('hex');
}

/** md5 of a file, streamed. */
export async function fileMd5(file) {
  const md5 = createHash('md5');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 << 20 })) md5.update(chunk);
  return md5.digest('hex');
}

/**
 * Throughput timing for a benchmark moving `size` bytes per run: `mbps(seconds)`, and
 * `timed(label, once)`, which runs `once` `runs` times, prints each figure and the median, and
 * returns the median in MB/s (10^6 bytes).
 */
export function throughput(size, runs) {
  const mbps = (seconds) => size / 1e6 / seconds;
  async function timed(label, once) {
    const seconds = [];
    for (let i = 0; i < runs; i++) seconds.push((await once()).seconds);
    const figure = mbps(median(seconds));
    console.log(`  ${label}: ${seconds.map((s) => mbps(s).toFixed(0)).join(', ')} MB/s -> median ${figure.toFixed(0)}`);
    return figure;
  }
  return { mbps, timed };
}

/**
 * Prints a table: header, a `-|-` rule, the rows; cells joined by ' | ', padded to the column
 * width (on the left for the columns `rightAligned(column)` picks, else on the right).
 */
export function printTable(header, rows, rightAligned = () => false) {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((cells) => String(cells[column]).length)));
  const format = (cells) =>
    cells.map((cell, column) => (rightAligned(column) ? String(cell).padStart(widths[column]) : String(cell).padEnd(widths[column]))).join(' | ');
  console.log(format(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('-|-'));
  for (const cells of rows) console.log(format(cells));
}

// ---- FUSE mounts

export function mountInfoLine(mountpoint) {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((line) => line.split(' ')[4] === mountpoint);
}

/** Frees a mount even if its server hangs: lazy unmount, abort the connection if needed. */
export function forceUnmount(mountpoint) {
  const line = mountInfoLine(mountpoint);
  if (line === undefined) return;
  const connection = line.split(' ')[2]?.split(':')[1];
  const bash = (command) => spawnSync('bash', ['-c', command], { timeout: 10_000 });
  bash(`fusermount -u -z '${mountpoint}' 2>/dev/null`);
  if (mountInfoLine(mountpoint) === undefined) return;
  bash(`mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null; echo 1 > /sys/fs/fuse/connections/${connection}/abort`);
  bash(`umount -l '${mountpoint}'`);
}

export async function waitForMount(mountpoint, child, what) {
  const deadline = Date.now() + 30_000;
  while (mountInfoLine(mountpoint) === undefined) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before mounting`);
    if (Date.now() > deadline) throw new Error(`${what} did not mount within 30 s`);
    await sleep(50);
  }
}

// ---- the targets table (bench/run.mjs prints it after every benchmark ran)

/**
 * Records rows of the issue's targets table: { workload, value, baseline, unit, baselineUnit,
 * aim: { min } or { max } (on the ratio, or with `absolute` on the value) }. Appended as JSON
 * lines to BENCH_RESULTS when bench/run.mjs set it; a benchmark run alone only prints its own.
 */
export function recordTargets(rows) {
  const file = process.env.BENCH_RESULTS;
  if (!file) return;
  fs.appendFileSync(file, rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
}

/** The 1-minute load average as text: figures on a busy machine are to be read with it. */
export const loadText = () => os.loadavg().map((load) => load.toFixed(2)).join(' ');

/** Cells of one targets row: workload | figure | baseline | ratio | target | met. */
export function targetCells({ workload, value, baseline, unit, baselineUnit = unit, aim, absolute = false }) {
  const digits = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1) : x.toFixed(3));
  const ratio = value / baseline;
  const judged = absolute ? value : ratio;
  const met = aim === undefined ? '' : aim.min !== undefined ? judged >= aim.min : judged <= aim.max;
  const target = aim === undefined ? '' : `${aim.min !== undefined ? '≥' : '≤'} ${aim.min ?? aim.max}${absolute ? ` ${unit}` : ''}`;
  return [workload, `${digits(value)} ${unit}`, `${digits(baseline)} ${baselineUnit}`, ratio.toFixed(2), target, met === '' ? '' : met ? 'yes' : 'NO'];
}
