#!/usr/bin/env node
// Foundation benchmark: sequential VDI throughput through `dog vdi write` / `dog vdi read` on a fresh
// three-node local cluster, beside `dd` on the same disk measured in the same run.
//
// - One data file of BENCH_SIZE random bytes (default 1 GiB) is written once into the temp dir and
//   stays in page cache, so both sides read their input from memory.
// - Writes: `dog vdi write NAME < data` (acknowledged only when every copy is on stable storage)
//   against `dd if=data of=localfile bs=4M conv=fsync`. dd's first write to a new file is reported
//   as "fresh"; then one rewrite warms up and BENCH_RUNS rewrites are timed. The VDI is the same:
//   its first write (allocating every object) is reported as fresh, one write warms up, then the
//   timed runs.
// - Reads: `dog vdi read NAME > /dev/null` against `dd if=localfile of=/dev/null bs=4M` (page cache,
//   nothing dropped), one warm-up each, then BENCH_RUNS timed. The md5 of one VDI read is checked.
// - Figures are medians of wall-clock time, in MB/s (10^6 bytes), including dog's process start.
//
// Environment: BENCH_SIZE (bytes, or with K/M/G suffix, binary), BENCH_RUNS (3),
// BENCH_DIR (where the temp dir goes, default os.tmpdir()), BENCH_KEEP=1 keeps the temp dir.
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dogBin = path.join(repo, 'bin', 'dog');
const sheepBin = path.join(repo, 'bin', 'sheep');
const ports = [7600, 7601, 7602];
const addr = '127.0.0.1';

function parseSize(text) {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  if (!match) throw new Error(`BENCH_SIZE '${text}': expected bytes or a number with K, M or G`);
  return Number(match[1]) * 1024 ** ' KMG'.indexOf((match[2] || ' ').toUpperCase());
}

const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
const tmp = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'sheep-bench-'));
const dataFile = path.join(tmp, 'data');
const localFile = path.join(tmp, 'localfile');

/** Runs a command; resolves with wall seconds, stdout (if captured) and stderr. Rejects on failure. */
function run(command, args, { stdin = 'ignore', stdout = 'pipe', hash = false } = {}) {
  return new Promise((resolve, reject) => {
    const inFd = typeof stdin === 'string' && stdin !== 'ignore' ? fs.openSync(stdin, 'r') : stdin;
    const outFd = typeof stdout === 'string' && stdout !== 'pipe' ? fs.openSync(stdout, 'w') : stdout;
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: [inFd, outFd, 'pipe'] });
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
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (typeof inFd === 'number') fs.closeSync(inFd);
      if (typeof outFd === 'number') fs.closeSync(outFd);
      if (code !== 0) {
        const why = err.trim().split('\n').pop() || `exit ${code ?? signal}`;
        reject(new Error(`${path.basename(command)} ${args.join(' ')}: ${why}`));
        return;
      }
      resolve({ seconds, out, err, bytes, md5: md5?.digest('hex') });
    });
  });
}

const dog = (args, options) => run(process.execPath, [dogBin, ...args, '-a', addr, '-p', String(ports[0])], options);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const mbps = (seconds) => size / 1e6 / seconds;
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

// ---- the cluster: three sheep in the foreground, killed at the end whatever happens
const sheep = [];
async function startCluster() {
  const clusterDir = path.join(tmp, 'cluster');
  for (const [i, port] of ports.entries()) {
    const store = path.join(tmp, `store${i}`);
    const child = spawn(
      process.execPath,
      [sheepBin, '-f', '-b', addr, '-p', String(port), '-z', String(i), '--nbd', 'off', '-c', `local:${clusterDir}`, store],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (chunk) => (err += chunk.toString()));
    child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, err })));
    sheep.push(child);
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const child of sheep) {
      if (child.exitCode !== null) throw new Error(`a sheep exited while starting: ${(await child.exited).err.trim() || `exit ${child.exitCode}`}`);
    }
    try {
      const { out } = await dog(['node', 'list', '-r']);
      if (out.trim().split('\n').filter((line) => line.includes(`${addr}:`)).length === ports.length) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`the three sheep did not all join within 30 s (logs in ${tmp}/store*/sheep.log)`);
    await sleep(200);
  }
  await dog(['cluster', 'format', '-c', '3']);
}

async function stopCluster() {
  for (const child of sheep) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const gone = Promise.all(sheep.map((child) => child.exited));
  const timeout = sleep(10_000).then(() => 'timeout');
  if ((await Promise.race([gone, timeout])) === 'timeout') {
    for (const child of sheep) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await gone;
  }
}

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  await stopCluster().catch(() => undefined);
  if (process.env.BENCH_KEEP === '1') console.log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`foundation bench: ${signal}, stopping the cluster`);
    void cleanup().then(() => process.exit(130));
  });
}

// ---- measurements
function writeDataFile() {
  const fd = fs.openSync(dataFile, 'w');
  const chunk = Buffer.alloc(4 << 20);
  for (let done = 0; done < size; done += chunk.length) {
    const piece = Math.min(chunk.length, size - done);
    randomFillSync(chunk, 0, piece);
    fs.writeSync(fd, chunk, 0, piece);
  }
  fs.closeSync(fd);
}

async function fileMd5(file) {
  const md5 = createHash('md5');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 << 20 })) md5.update(chunk);
  return md5.digest('hex');
}

async function timed(label, once) {
  const seconds = [];
  for (let i = 0; i < runs; i++) seconds.push((await once()).seconds);
  const figure = mbps(median(seconds));
  console.log(`  ${label}: ${seconds.map((s) => mbps(s).toFixed(0)).join(', ')} MB/s -> median ${figure.toFixed(0)}`);
  return figure;
}

const ddWrite = () => run('dd', [`if=${dataFile}`, `of=${localFile}`, 'bs=4M', 'conv=fsync', 'status=none']);
const ddRead = () => run('dd', [`if=${localFile}`, 'of=/dev/null', 'bs=4M', 'status=none']);
const vdiWrite = (name) => dog(['vdi', 'write', name], { stdin: dataFile });
const vdiRead = (name) => dog(['vdi', 'read', name], { stdout: '/dev/null' });

async function main() {
  const gib = (size / 2 ** 30).toFixed(size % 2 ** 30 ? 2 : 0);
  console.log(`foundation bench: ${gib} GiB, ${runs} timed runs after one warm-up, temp dir ${tmp}`);
  writeDataFile();
  const dataMd5 = await fileMd5(dataFile); // also leaves the file in page cache

  console.log('baseline (dd on the same disk):');
  const ddFresh = mbps((await ddWrite()).seconds);
  console.log(`  dd write, fresh file: ${ddFresh.toFixed(0)} MB/s`);
  await ddWrite(); // warm-up rewrite
  const ddWriteMbps = await timed('dd write, rewrite', ddWrite);
  await ddRead(); // warm-up
  const ddReadMbps = await timed('dd read (page cache)', ddRead);
  fs.rmSync(localFile); // give the space back before the cluster takes 4x the size

  console.log('cluster: three sheep on 127.0.0.1:7600-7602, formatted with 3 copies');
  await startCluster();
  const rows = [];
  for (const copies of [1, 3]) {
    const name = `bench-c${copies}`;
    await dog(['vdi', 'create', '-c', String(copies), name, String(size)]);
    const fresh = mbps((await vdiWrite(name)).seconds); // first write allocates every object
    console.log(`  copies ${copies} write, fresh VDI: ${fresh.toFixed(0)} MB/s`);
    await vdiWrite(name); // warm-up
    const write = await timed(`copies ${copies} write`, () => vdiWrite(name));
    const check = await dog(['vdi', 'read', name], { hash: true });
    if (check.bytes !== size || check.md5 !== dataMd5) {
      throw new Error(`copies ${copies}: read back ${check.bytes} bytes with md5 ${check.md5}, wrote ${size} bytes with md5 ${dataMd5}`);
    }
    console.log(`  copies ${copies} read back: md5 ${check.md5} matches`);
    await vdiRead(name); // warm-up (the md5 read above was one too)
    const read = await timed(`copies ${copies} read`, () => vdiRead(name));
    rows.push({ test: `copies ${copies} write, fresh VDI`, value: fresh, base: ddFresh, aim: undefined });
    rows.push({ test: `copies ${copies} write`, value: write, base: ddWriteMbps, aim: copies === 1 ? 0.5 : 0.3 });
    rows.push({ test: `copies ${copies} read`, value: read, base: ddReadMbps, aim: 0.8 });
  }

  const header = ['test', 'MB/s', 'baseline MB/s', 'ratio', 'aim'];
  const lines = rows.map(({ test, value, base, aim }) => {
    const ratio = value / base;
    const verdict = aim === undefined ? '(info)' : `>= ${aim} ${ratio >= aim ? 'met' : 'MISSED'}`;
    return [test, value.toFixed(0), base.toFixed(0), ratio.toFixed(2), verdict];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column].length)));
  const format = (cells) => cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join(' | ');
  console.log(`\nfoundation: ${gib} GiB sequential, median of ${runs}; baseline = dd bs=4M on the same disk (write conv=fsync)`);
  console.log(format(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('-|-'));
  for (const line of lines) console.log(format(line));
}

try {
  await main();
  await cleanup();
} catch (error) {
  await cleanup();
  console.error(`foundation bench: error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
