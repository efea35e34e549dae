#!/usr/bin/env node
// NBD benchmark: a fresh three-node cluster (ports 7950-7952, NBD 11950-11952) against `qemu-nbd`
// serving a raw file on the same disk, measured in the same run with the same clients.
//
// - Sequential: `nbdcopy --connections=4` of BENCH_SIZE (default 1 GiB) random bytes from a file
//   (in page cache) into the export, and from the export to `null:`. VDIs with copies 1 and copies 3
//   (written through node 0), and qemu-nbd (`-f raw -t -e 8`, default cache mode, i.e. writeback:
//   it acknowledges writes from the page cache and syncs only on FLUSH, which nbdcopy sends at the
//   end; so does a sheep's export by default, each copy in its host's cache: docs/durability.md). Each: one
//   warm-up (the first write also allocates every object), then BENCH_RUNS timed, median in MB/s.
// - Random 4 KiB: fio's nbd engine, iodepth 16, BENCH_FIO_SECONDS (10) each, randread then
//   randwrite, on the same exports (already fully written, so reads hit data). Then randwrite
//   writethrough: qemu-nbd --cache=writethrough (port 11958) against the NAME/writethrough exports.
// - TLS: the copies 1 export again over NBD STARTTLS with a PSK (sheep 0 runs `--nbd-tls on`, so
//   plain clients are served too), same nbdcopy runs; its ratio is against plain copies 1, with
//   sheep 0's CPU seconds per GiB moved for both (from /proc, so other load does not count).
// - Ratios are sheep / qemu-nbd (TLS: TLS / plain); the aims are those of the NBD issue.
//
// Environment: BENCH_SIZE (bytes or K/M/G, default 1G), BENCH_RUNS (3), BENCH_FIO_SECONDS (10),
// BENCH_DIR (temp dir parent), BENCH_KEEP=1 keeps the temp dir, BENCH_PROFILE=1 starts sheep 0
// with --cpu-prof (profile written to the temp dir, which is then kept).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import path from 'node:path';
import {
  dogArgv, exitOnSignals, gibText, joinAndFormat, makeTmp, parseSize, portOpen, printTable, removeTmp, repo, run, sheepArgv,
  recordTargets, sheepBin, spawnDaemon, stopDaemons, throughput, waitForPort, writeRandomFile, median, runOnce,
} from './lib.mjs';

const sheepMain = path.join(repo, 'dist', 'sheep', 'main.js');
const ports = [7950, 7951, 7952];
const nbdPorts = [11950, 11951, 11952];
const qemuNbdPort = 11959;
/** qemu-nbd --cache=writethrough: the baseline of writethrough exports (docs/durability.md). */
const qemuNbdWritethroughPort = 11958;
const addr = '127.0.0.1';

const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
const fioSeconds = Number(process.env.BENCH_FIO_SECONDS ?? 5);
const profile = process.env.BENCH_PROFILE === '1';
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
if (size % (1 << 20) !== 0) throw new Error('BENCH_SIZE must be a whole number of MiB');
const tmp = makeTmp('nbd-bench-');
const dataFile = path.join(tmp, 'data');
const rawFile = path.join(tmp, 'qemu-nbd.raw');
const rawWritethroughFile = path.join(tmp, 'qemu-nbd-wt.raw');
const pskFile = path.join(tmp, 'keys.psk');

const dog = (args) => run(process.execPath, dogArgv(args, ports[0], addr));
const { mbps, timed } = throughput(size, runs);

// ---- daemons: killed at the end whatever happens
const daemons = [];
const daemon = (command, args) => spawnDaemon(command, args, daemons);
let sheep0Pid; // for its CPU time (daemons[0] is qemu-nbd, started first)

async function startCluster() {
  const clusterDir = path.join(tmp, 'cluster');
  const sheep = [];
  for (const [i, port] of ports.entries()) {
    const store = path.join(tmp, `store${i}`);
    const sheepArgs = sheepArgv({ addr, port, zone: i, clusterDir, store, nbd: `${addr}:${nbdPorts[i]}` });
    // Sheep 0 offers TLS besides plain NBD (the store directory stays the last argument).
    if (i === 0) sheepArgs.splice(-1, 0, '--nbd-tls', 'on', '--nbd-tls-psk', pskFile);
    const child = profile && i === 0
      ? daemon(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${tmp}`, sheepMain, ...sheepArgs])
      : daemon(process.execPath, [sheepBin, ...sheepArgs]);
    sheep.push(child);
    if (i === 0) sheep0Pid = child.pid;
    await waitForPort(port, child, `sheep ${i}`);
  }
  await joinAndFormat(dog, { addr, count: ports.length, children: sheep });
  for (const [i, port] of nbdPorts.entries()) await waitForPort(port, sheep[i], `sheep ${i} NBD`);
}

async function startQemuNbd() {
  for (const [file, port, cache] of [[rawFile, qemuNbdPort, []], [rawWritethroughFile, qemuNbdWritethroughPort, ['--cache=writethrough']]]) {
    fs.closeSync(fs.openSync(file, 'w'));
    fs.truncateSync(file, size);
    const child = daemon('qemu-nbd', ['-f', 'raw', '-t', '-e', '8', ...cache, '-b', addr, '-p', String(port), file]);
    await waitForPort(port, child, 'qemu-nbd');
  }
}

const cleanup = runOnce(async () => {
  // SIGINT lets node write a --cpu-prof profile; SIGTERM stops sheep and qemu-nbd cleanly.
  await stopDaemons(daemons, profile ? 'SIGINT' : 'SIGTERM').catch(() => undefined);
  removeTmp(tmp, process.env.BENCH_KEEP === '1' || profile);
});
exitOnSignals(cleanup, (signal) => `nbd bench: ${signal}, stopping the daemons`);

// ---- measurements
const copyIn = (uri) => run('nbdcopy', ['--connections=4', dataFile, uri]);
const copyOut = (uri) => run('nbdcopy', ['--connections=4', uri, 'null:']);

/** CPU seconds (user + system) a process has used so far, from /proc/PID/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs `once` through `timed`; with `cpu`, also reports sheep 0's CPU seconds per GiB moved. */
async function timedWithCpu(label, once, cpu) {
  const before = cpuSeconds(sheep0Pid);
  const figure = await timed(label, once);
  const cpuPerGib = (cpuSeconds(sheep0Pid) - before) / ((runs * size) / 2 ** 30);
  if (cpu) console.log(`  ${label}: sheep 0 CPU ${cpuPerGib.toFixed(2)} s/GiB`);
  return { figure, cpuPerGib };
}

async function sequential(label, uri, cpu = true) {
  const fresh = mbps((await copyIn(uri)).seconds); // warm-up; allocates every object
  console.log(`  ${label} write, fresh: ${fresh.toFixed(0)} MB/s`);
  const write = await timedWithCpu(`${label} write`, () => copyIn(uri), cpu);
  await copyOut(uri); // warm-up
  const read = await timedWithCpu(`${label} read`, () => copyOut(uri), cpu);
  return { write: write.figure, read: read.figure, writeCpu: write.cpuPerGib, readCpu: read.cpuPerGib };
}

/** Median IOPS of BENCH_RUNS fio runs. */
async function fio(label, uri, rw) {
  const iops = [];
  for (let i = 0; i < runs; i++) iops.push(await fioOnce(uri, rw));
  const figure = median(iops);
  console.log(`  ${label} ${rw}: ${iops.map((x) => x.toFixed(0)).join(', ')} IOPS -> median ${figure.toFixed(0)}`);
  return figure;
}

async function fioOnce(uri, rw) {
  const { out } = await run('fio', [
    '--name=nbd', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', '--iodepth=16',
    `--size=${size}`, `--runtime=${fioSeconds}`, '--time_based', '--ramp_time=1', '--norandommap',
    '--output-format=json',
  ]);
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  return rw === 'randread' ? job.read.iops : job.write.iops;
}

async function main() {
  for (const tool of [['nbdcopy', '--version'], ['qemu-nbd', '--version'], ['fio', '--version']]) {
    await run(tool[0], tool.slice(1)).catch(() => {
      throw new Error(`${tool[0]} is missing (Debian: libnbd-bin, qemu-utils, fio)`);
    });
  }
  const engines = (await run('fio', ['--enghelp'])).out;
  if (!/^\s*nbd$/m.test(engines)) throw new Error('this fio has no nbd engine');
  const gib = gibText(size);
  console.log(`nbd bench: ${gib} GiB, ${runs} timed runs after one warm-up, fio ${fioSeconds} s, temp dir ${tmp}`);
  for (const port of [...ports, ...nbdPorts, qemuNbdPort, qemuNbdWritethroughPort]) {
    if (await portOpen(port)) throw new Error(`port ${port} is already in use`);
  }
  writeRandomFile(dataFile, size);
  fs.writeFileSync(pskFile, `bench:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  fs.readFileSync(dataFile); // into page cache

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
    seq[target.key] = await sequential(target.label, target.uri, target.copies !== undefined);
  }
  seq.c1tls = await sequential('copies 1 TLS-PSK', `nbds://bench@${addr}:${nbdPorts[0]}/bench-c1?tls-psk-file=${pskFile}`);
  const rnd = {};
  for (const target of targets) {
    rnd[target.key] = { read: await fio(target.label, target.uri, 'randread'), write: await fio(target.label, target.uri, 'randwrite') };
  }
  // Writethrough: every write durable before its reply (qemu-nbd --cache=writethrough; the
  // sheep's NAME/writethrough exports of the same VDIs). The qemu file is written once first.
  await copyIn(`nbd://${addr}:${qemuNbdWritethroughPort}`);
  const wt = {
    qemu: await fio('qemu-nbd writethrough', `nbd://${addr}:${qemuNbdWritethroughPort}`, 'randwrite'),
    c1: await fio('copies 1 writethrough', `${targets[1].uri}/writethrough`, 'randwrite'),
    c3: await fio('copies 3 writethrough', `${targets[2].uri}/writethrough`, 'randwrite'),
  };
  const qemuUnit = 'IOPS qemu-nbd';
  recordTargets([
    { workload: 'fio 4 KiB randwrite qd16, copies 3', value: rnd.c3.write, baseline: rnd.qemu.write, unit: 'IOPS', baselineUnit: `${qemuUnit} writeback`, aim: { min: 0.5 } },
    { workload: 'fio 4 KiB randwrite qd16 writethrough, copies 3', value: wt.c3, baseline: wt.qemu, unit: 'IOPS', baselineUnit: `${qemuUnit} writethrough`, aim: { min: 0.5 } },
    { workload: 'fio 4 KiB randread qd16, copies 1', value: rnd.c1.read, baseline: rnd.qemu.read, unit: 'IOPS', baselineUnit: qemuUnit, aim: { min: 0.8 } },
    { workload: 'fio 4 KiB randread qd16, copies 3', value: rnd.c3.read, baseline: rnd.qemu.read, unit: 'IOPS', baselineUnit: qemuUnit, aim: { min: 0.8 } },
    { workload: `nbdcopy write ${gib} GiB, copies 3`, value: seq.c3.write, baseline: seq.qemu.write, unit: 'MB/s', baselineUnit: 'MB/s qemu-nbd', aim: { min: 0.5 } },
    { workload: `nbdcopy write ${gib} GiB, copies 1`, value: seq.c1.write, baseline: seq.qemu.write, unit: 'MB/s', baselineUnit: 'MB/s qemu-nbd', aim: { min: 0.8 } },
    // Both sides read from page cache: the sheep keep no cache of their own, so nothing else is warm.
    { workload: `nbdcopy read ${gib} GiB, copies 3`, value: seq.c3.read, baseline: seq.qemu.read, unit: 'MB/s', baselineUnit: 'MB/s qemu-nbd', aim: { min: 0.9 } },
  ]);

  const rows = [];
  const row = (test, value, baseline, unit, aim) => {
    const ratio = value / baseline;
    rows.push([test, `${value.toFixed(0)} ${unit}`, `${baseline.toFixed(0)} ${unit}`, ratio.toFixed(2), aim === undefined ? '' : `≥${aim} ${ratio >= aim ? 'ok' : 'BELOW'}`]);
  };
  for (const key of ['c1', 'c3']) {
    const c = key === 'c1' ? 1 : 3;
    row(`copies ${c} nbdcopy write`, seq[key].write, seq.qemu.write, 'MB/s', c === 1 ? 0.8 : 0.5);
    row(`copies ${c} nbdcopy read`, seq[key].read, seq.qemu.read, 'MB/s', c === 1 ? 0.6 : undefined);
    row(`copies ${c} 4K randread qd16`, rnd[key].read, rnd.qemu.read, 'IOPS', c === 1 ? 0.5 : undefined);
    row(`copies ${c} 4K randwrite qd16`, rnd[key].write, rnd.qemu.write, 'IOPS', 0.5);
    row(`copies ${c} 4K randwrite qd16 writethrough (vs qemu-nbd writethrough)`, wt[key], wt.qemu, 'IOPS', 0.5);
  }
  // Baseline: plain copies 1, through the same sheep, in the same run.
  row('copies 1 TLS-PSK nbdcopy write (vs plain)', seq.c1tls.write, seq.c1.write, 'MB/s');
  row('copies 1 TLS-PSK nbdcopy read (vs plain)', seq.c1tls.read, seq.c1.read, 'MB/s');
  const cpuRow = (what, tlsCpu, plainCpu) =>
    rows.push([`sheep 0 CPU, copies 1 ${what}, TLS-PSK vs plain`, `${tlsCpu.toFixed(2)} s/GiB`, `${plainCpu.toFixed(2)} s/GiB`, (tlsCpu / plainCpu).toFixed(2), '']);
  cpuRow('write', seq.c1tls.writeCpu, seq.c1.writeCpu);
  cpuRow('read', seq.c1tls.readCpu, seq.c1.readCpu);
  const header = ['test', 'value', 'baseline (qemu-nbd unless named)', 'ratio', 'aim'];
  console.log('');
  printTable(header, rows);
}

try {
  await main();
  await cleanup();
} catch (error) {
  console.error(`nbd bench: ${error instanceof Error ? error.message : String(error)}`);
  await cleanup();
  process.exit(1);
}
