#!/usr/bin/env node
// Recovery to a new node beside `dog vdi read` of the same data, and `dog node list` wall time
// beside `node -e 0`, on one three-node cluster (127.0.0.1:7800-7802, then 7803+ as nodes join).
//
// - A VDI of BENCH_SIZE random bytes (default 1 GiB), copies 3, written with `dog vdi write`.
// - Baseline: `dog vdi read NAME > /dev/null` through node 0, one warm-up, BENCH_RUNS timed.
// - Each of BENCH_RUNS rounds SIGKILLs the newest node (two are left: every object still has all
//   its effective copies, nothing moves) and starts a fresh one with an empty store, which must
//   then receive every object. The rate is the bytes its recovery received over the time from its
//   "recovery started" to its "recovery finished" log line (so process start and join are not in
//   it); the wall time from spawn to finished is printed too.
// - `dog node list` against the cluster and `node -e 0`, 11 runs each, median wall seconds.
// Environment: BENCH_SIZE, BENCH_RUNS (3), BENCH_DIR, BENCH_KEEP=1.
import * as fs from 'node:fs';
import path from 'node:path';
import {
  dogArgv, exitOnSignals, gibText, joinAndFormat, makeTmp, median, parseSize, printTable, recordTargets, removeTmp, run, sheepArgv,
  sheepBin, sleep, spawnDaemon, stopDaemons, throughput, writeRandomFile, runOnce,
} from './lib.mjs';

const basePort = 7800;
const addr = '127.0.0.1';
const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
const tmp = makeTmp('sheep-recovery-bench-');
const clusterDir = path.join(tmp, 'cluster');
const dataFile = path.join(tmp, 'data');
const dog = (args, options) => run(process.execPath, dogArgv(args, basePort, addr), options);
const { mbps, timed } = throughput(size, runs);

const sheep = new Map(); // index -> child
const storeDir = (i) => path.join(tmp, `store${i}`);
function startSheep(i) {
  const child = spawnDaemon(process.execPath, [sheepBin, ...sheepArgv({ addr, port: basePort + i, zone: i, clusterDir, store: storeDir(i) })]);
  sheep.set(i, child);
  return child;
}

const cleanup = runOnce(async () => {
  await stopDaemons([...sheep.values()]).catch(() => undefined);
  removeTmp(tmp);
});
exitOnSignals(cleanup, (signal) => `recovery bench: ${signal}, stopping the cluster`);

async function nodeCount() {
  const { out } = await dog(['node', 'list', '-r']).catch(() => ({ out: '' }));
  return out.trim().split('\n').filter((line) => line.includes(`${addr}:`)).length;
}

/** The new node's "recovery finished" line that received data, with its "recovery started". */
function recoveryLog(i) {
  let lines;
  try {
    lines = fs.readFileSync(path.join(storeDir(i), 'sheep.log'), 'utf8').split('\n').filter((line) => line.includes('"recovery '));
  } catch {
    return undefined;
  }
  const parsed = lines.map((line) => JSON.parse(line));
  const finished = parsed.findLast((entry) => entry.msg === 'recovery finished' && entry.received > 0);
  const started = finished && parsed.findLast((entry) => entry.msg === 'recovery started' && entry.epoch === finished.epoch);
  return started ? { seconds: (finished.time - started.time) / 1000, bytes: finished.received, finishedMs: finished.time } : undefined;
}

async function recoveryRound(victim, fresh) {
  sheep.get(victim).kill('SIGKILL');
  await sheep.get(victim).exited;
  sheep.delete(victim);
  for (const deadline = Date.now() + 60_000; (await nodeCount()) !== 2; await sleep(200)) {
    if (Date.now() > deadline) throw new Error('the cluster did not drop the killed node within 60 s');
  }
  const spawnedMs = Date.now();
  const child = startSheep(fresh);
  for (const deadline = Date.now() + 1_800_000; ; await sleep(100)) {
    if (child.exitCode !== null) throw new Error(`sheep ${fresh} exited: ${(await child.exited).err.trim()}`);
    const log = recoveryLog(fresh);
    if (log) {
      const rate = log.bytes / 1e6 / log.seconds;
      console.log(`  node ${fresh}: received ${(log.bytes / 1e6).toFixed(0)} MB in ${log.seconds.toFixed(2)} s = ${rate.toFixed(0)} MB/s (${((log.finishedMs - spawnedMs) / 1000).toFixed(1)} s from spawn)`);
      return rate;
    }
    if (Date.now() > deadline) throw new Error('recovery did not finish within 30 minutes');
  }
}

async function wallMedian(command, args, count = 11) {
  const seconds = [];
  for (let i = 0; i < count; i++) seconds.push((await run(command, args)).seconds);
  return median(seconds);
}

async function main() {
  console.log(`recovery bench: ${gibText(size)} GiB, copies 3, ${runs} timed runs, temp dir ${tmp}`);
  writeRandomFile(dataFile, size);
  for (let i = 0; i < 3; i++) startSheep(i);
  await joinAndFormat(dog, { addr, count: 3, children: [...sheep.values()], logs: `${tmp}/store*/sheep.log` });
  await dog(['vdi', 'create', 'bench', String(size)]);
  await dog(['vdi', 'write', 'bench'], { stdin: dataFile });

  await dog(['vdi', 'read', 'bench'], { stdout: '/dev/null' }); // warm-up
  const readMbps = await timed('dog vdi read', () => dog(['vdi', 'read', 'bench'], { stdout: '/dev/null' }));
  const rates = [];
  for (let round = 0; round < runs; round++) rates.push(await recoveryRound(round === 0 ? 2 : 2 + round, 3 + round));
  const recoveryMbps = median(rates);
  console.log(`  recovery to a new node: median ${recoveryMbps.toFixed(0)} MB/s`);

  const dogList = await wallMedian(process.execPath, dogArgv(['node', 'list'], basePort, addr));
  const nodeStart = await wallMedian(process.execPath, ['-e', '0']);
  console.log(`  dog node list: ${dogList.toFixed(3)} s; node -e 0: ${nodeStart.toFixed(3)} s (medians of 11)`);

  const targets = [
    { workload: `recovery of ${gibText(size)} GiB to a new node, copies 3`, value: recoveryMbps, baseline: readMbps, unit: 'MB/s', baselineUnit: 'MB/s dog vdi read', aim: { min: 0.5 } },
    { workload: 'dog node list wall time', value: dogList, baseline: nodeStart, unit: 's', baselineUnit: 's node -e 0', aim: { max: 0.12 }, absolute: true },
  ];
  recordTargets(targets);
  console.log('');
  printTable(
    ['figure', 'value', 'baseline', 'ratio', 'aim'],
    [
      ['recovery to a new node', `${recoveryMbps.toFixed(0)} MB/s`, `${readMbps.toFixed(0)} MB/s dog vdi read`, (recoveryMbps / readMbps).toFixed(2), '>= 0.5'],
      ['dog node list wall time', `${dogList.toFixed(3)} s`, `${nodeStart.toFixed(3)} s node -e 0`, (dogList / nodeStart).toFixed(2), '<= 0.12 s'],
    ],
  );
}

try {
  await main();
  await cleanup();
} catch (error) {
  console.error(`recovery bench: ${error instanceof Error ? error.message : String(error)}`);
  await cleanup();
  process.exit(1);
}
