#!/usr/bin/env node
// NBD benchmark: a fresh three-node cluster (ports 7950-7952, NBD 11950-11952) against `qemu-nbd`
// serving a raw file on the same disk, measured in the same run with the same clients.
//
// - Sequential: `nbdcopy --connections=4` of BENCH_SIZE (default 1 GiB) random bytes from a file
//   (in page cache) into the export, and from the export to `null:`. VDIs with copies 1 and copies 3
//   (written through node 0), and qemu-nbd (`-f raw -t -e 8`, default cache mode, i.e. writeback:
//   it acknowledges writes from the page cache and syncs only on FLUSH, which nbdcopy sends at the
//   end; a sheep acknowledges a write only once every copy is on stable storage). Each: one
//   warm-up (the first write also allocates every object), then BENCH_RUNS timed, median in MB/s.
// - Random 4 KiB: fio's nbd engine, iodepth 16, BENCH_FIO_SECONDS (10) each, randread then
//   randwrite, on the same exports (already fully written, so reads hit data).
// - Ratios are sheep / qemu-nbd; the aims are those of the NBD issue.
//
// Environment: BENCH_SIZE (bytes or K/M/G, default 1G), BENCH_RUNS (3), BENCH_FIO_SECONDS (10),
// BENCH_DIR (temp dir parent), BENCH_KEEP=1 keeps the temp dir, BENCH_PROFILE=1 starts sheep 0
// with --cpu-prof (profile written to the temp dir, which is then kept).
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dogBin = path.join(repo, 'bin', 'dog');
const sheepBin = path.join(repo, 'bin', 'sheep');
const sheepMain = path.join(repo, 'dist', 'sheep', 'main.js');
const ports = [7950, 7951, 7952];
const nbdPorts = [11950, 11951, 11952];
const qemuNbdPort = 11959;
const addr = '127.0.0.1';

function parseSize(text) {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  if (!match) throw new Error(`BENCH_SIZE '${text}': expected bytes or a number with K, M or G`);
  return Number(match[1]) * 1024 ** ' KMG'.indexOf((match[2] || ' ').toUpperCase());
}

const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
const fioSeconds = Number(process.env.BENCH_FIO_SECONDS ?? 10);
const profile = process.env.BENCH_PROFILE === '1';
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
if (size % (1 << 20) !== 0) throw new Error('BENCH_SIZE must be a whole number of MiB');
const tmp = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'nbd-bench-'));
const dataFile = path.join(tmp, 'data');
const rawFile = path.join(tmp, 'qemu-nbd.raw');

/** Runs a command; resolves with wall seconds and output. Rejects on a non-zero exit. */
function run(command, args) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk.toString()));
    child.stderr.on('data', (chunk) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) {
        const why = err.trim().split('\n').pop() || `exit ${code ?? signal}`;
        reject(new Error(`${path.basename(command)} ${args.join(' ')}: ${why}`));
        return;
      }
      resolve({ seconds, out, err });
    });
  });
}

const dog = (args) => run(process.execPath, [dogBin, ...args, '-a', addr, '-p', String(ports[0])]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const mbps = (seconds) => size / 1e6 / seconds;
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: addr, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitForPort(port, child, what) {
  const deadline = Date.now() + 30_000;
  while (!(await portOpen(port))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited: ${(await child.exited).err.trim()}`);
    if (Date.now() > deadline) throw new Error(`${what} does not listen on ${port} after 30 s`);
    await sleep(100);
  }
}

// ---- daemons: killed at the end whatever happens
const daemons = [];
function daemon(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (chunk) => (err += chunk.toString()));
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, err })));
  daemons.push(child);
  return child;
}

async function startCluster() {
  const clusterDir = path.join(tmp, 'cluster');
  for (const [i, port] of ports.entries()) {
    const store = path.join(tmp, `store${i}`);
    const sheepArgs = ['-f', '-b', addr, '-p', String(port), '-z', String(i), '--nbd', `${addr}:${nbdPorts[i]}`, '-c', `local:${clusterDir}`, store];
    const child = profile && i === 0
      ? daemon(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${tmp}`, sheepMain, ...sheepArgs])
      : daemon(process.execPath, [sheepBin, ...sheepArgs]);
    await waitForPort(port, child, `sheep ${i}`);
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { out } = await dog(['node', 'list', '-r']);
    if (out.trim().split('\n').filter((line) => line.includes(`${addr}:`)).length === ports.length) break;
    if (Date.now() > deadline) throw new Error('the three sheep did not all join within 30 s');
    await sleep(200);
  }
  await dog(['cluster', 'format', '-c', '3']);
  for (const [i, port] of nbdPorts.entries()) await waitForPort(port, daemons[i], `sheep ${i} NBD`);
}

async function startQemuNbd() {
  fs.closeSync(fs.openSync(rawFile, 'w'));
  fs.truncateSync(rawFile, size);
  const child = daemon('qemu-nbd', ['-f', 'raw', '-t', '-e', '8', '-b', addr, '-p', String(qemuNbdPort), rawFile]);
  await waitForPort(qemuNbdPort, child, 'qemu-nbd');
}

async function stopDaemons() {
  // SIGINT lets node write a --cpu-prof profile; SIGTERM stops sheep and qemu-nbd cleanly.
  for (const child of daemons) if (child.exitCode === null && child.signalCode === null) child.kill(profile ? 'SIGINT' : 'SIGTERM');
  const gone = Promise.all(daemons.map((child) => child.exited));
  if ((await Promise.race([gone, sleep(10_000).then(() => 'timeout')])) === 'timeout') {
    for (const child of daemons) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await gone;
  }
}

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  await stopDaemons().catch(() => undefined);
  if (process.env.BENCH_KEEP === '1' || profile) console.log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`nbd bench: ${signal}, stopping the daemons`);
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
  fs.readFileSync(dataFile); // into page cache
}

async function timed(label, once) {
  const seconds = [];
  for (let i = 0; i < runs; i++) seconds.push((await once()).seconds);
  const figure = mbps(median(seconds));
  console.log(`  ${label}: ${seconds.map((s) => mbps(s).toFixed(0)).join(', ')} MB/s -> median ${figure.toFixed(0)}`);
  return figure;
}

const copyIn = (uri) => run('nbdcopy', ['--connections=4', dataFile, uri]);
const copyOut = (uri) => run('nbdcopy', ['--connections=4', uri, 'null:']);

async function sequential(label, uri) {
  const fresh = mbps((await copyIn(uri)).seconds); // warm-up; allocates every object
  console.log(`  ${label} write, fresh: ${fresh.toFixed(0)} MB/s`);
  const write = await timed(`${label} write`, () => copyIn(uri));
  await copyOut(uri); // warm-up
  const read = await timed(`${label} read`, () => copyOut(uri));
  return { write, read };
}

async function fio(label, uri, rw) {
  const { out } = await run('fio', [
    '--name=nbd', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', '--iodepth=16',
    `--size=${size}`, `--runtime=${fioSeconds}`, '--time_based', '--ramp_time=1', '--norandommap',
    '--output-format=json',
  ]);
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  const iops = rw === 'randread' ? job.read.iops : job.write.iops;
  console.log(`  ${label} ${rw}: ${iops.toFixed(0)} IOPS`);
  return iops;
}

async function main() {
  for (const tool of [['nbdcopy', '--version'], ['qemu-nbd', '--version'], ['fio', '--version']]) {
    await run(tool[0], tool.slice(1)).catch(() => {
      throw new Error(`${tool[0]} is missing (Debian: libnbd-bin, qemu-utils, fio)`);
    });
  }
  const engines = (await run('fio', ['--enghelp'])).out;
  if (!/^\s*nbd$/m.test(engines)) throw new Error('this fio has no nbd engine');
  const gib = (size / 2 ** 30).toFixed(size % 2 ** 30 ? 2 : 0);
  console.log(`nbd bench: ${gib} GiB, ${runs} timed runs after one warm-up, fio ${fioSeconds} s, temp dir ${tmp}`);
  for (const port of [...ports, ...nbdPorts, qemuNbdPort]) {
    if (await portOpen(port)) throw new Error(`port ${port} is already in use`);
  }
  writeDataFile();

  await startQemuNbd();
  await startCluster();
  console.log('cluster: three sheep on 127.0.0.1:7950-7952 (NBD 11950-11952); baseline qemu-nbd on 11959');
  const targets = [
    { key: 'qemu', label: 'qemu-nbd', uri: `nbd://${addr}:${qemuNbdPort}` },
    { key: 'c1', label: 'copies 1', uri: `nbd://${addr}:${nbdPorts[0]}/bench-c1`, copies: 1 },
    { key: 'c3', label: 'copies 3', uri: `nbd://${addr}:${nbdPorts[0]}/bench-c3`, copies: 3 },
  ];
  const seq = {};
  for (const target of targets) {
    if (target.copies) await dog(['vdi', 'create', '-c', String(target.copies), `bench-c${target.copies}`, String(size)]);
    seq[target.key] = await sequential(target.label, target.uri);
  }
  const rnd = {};
  for (const target of targets) {
    rnd[target.key] = { read: await fio(target.label, target.uri, 'randread'), write: await fio(target.label, target.uri, 'randwrite') };
  }

  const rows = [];
  const row = (test, value, baseline, unit, aim) => {
    const ratio = value / baseline;
    rows.push([test, `${value.toFixed(0)} ${unit}`, `${baseline.toFixed(0)} ${unit}`, ratio.toFixed(2), aim === undefined ? '' : `≥${aim} ${ratio >= aim ? 'ok' : 'BELOW'}`]);
  };
  for (const key of ['c1', 'c3']) {
    const c = key === 'c1' ? 1 : 3;
    row(`copies ${c} nbdcopy write`, seq[key].write, seq.qemu.write, 'MB/s', c === 1 ? 0.6 : 0.35);
    row(`copies ${c} nbdcopy read`, seq[key].read, seq.qemu.read, 'MB/s', c === 1 ? 0.6 : undefined);
    row(`copies ${c} 4K randread qd16`, rnd[key].read, rnd.qemu.read, 'IOPS', c === 1 ? 0.5 : undefined);
    row(`copies ${c} 4K randwrite qd16`, rnd[key].write, rnd.qemu.write, 'IOPS', c === 1 ? 0.5 : undefined);
  }
  const header = ['test', 'value', 'baseline (qemu-nbd)', 'ratio', 'aim'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ');
  console.log(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('-|-')}`);
  for (const r of rows) console.log(line(r));
}

try {
  await main();
  await cleanup();
} catch (error) {
  console.error(`nbd bench: ${error instanceof Error ? error.message : String(error)}`);
  await cleanup();
  process.exit(1);
}
