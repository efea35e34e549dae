#!/usr/bin/env node
// Membership benchmark: recovery rate beside the cluster write rate, rebalancing share, bytes sent
// by a differential recovery, and foreground 4 KiB write latency during recovery beside idle.
//
// Four sheep (-f) on 127.0.0.1:7700-7703, copies 3; a fifth on 7704 joins later. Needs `npx tsc`.
// 1. `dog vdi write` of BENCH_SIZE random bytes (default 1 GiB): cluster write rate.
// 2. p99 of 4 KiB writes (bench/latency-writes.mjs, in this process) while idle.
// 3. SIGKILL one sheep; time until every object has its 3 copies on the three live stores (store
//    directories polled every 200 ms): recovery rate = bytes copied / time, with 4 KiB writes
//    running meanwhile (their p99 during recovery). Repeated with `dog node recovery
//    set-throttle` (BENCH_THROTTLE, default "1 100": 1 object per 100 ms per node) unless
//    BENCH_THROTTLE=off.
// 4. A fifth sheep joins: its share of all object copies (ideal 1/5).
// 5. One sheep down for one 4 KiB write comes back: bytes it received (its "recovery finished"
//    log line) against the data it holds (ideal: that one object).
// Finally the whole VDI is read back and its md5 checked. Prints: figure | value | baseline | ratio | aim.
// Environment: BENCH_SIZE (bytes or K/M/G, default 1G), BENCH_THROTTLE, BENCH_DIR, BENCH_KEEP=1.
import * as fs from 'node:fs';
import path from 'node:path';
import {
  dogArgv, exitOnSignals, fileMd5, makeTmp, parseSize, printTable, removeTmp, run as runCommand, sheepArgv, sheepBin, sleep,
  spawnDaemon, writeRandomFile,
} from './lib.mjs';
import { measureWrites } from './latency-writes.mjs';

const basePort = 7700;
const copies = 3;
const objectBytes = 4 * 1024 * 1024;

const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const throttle = (process.env.BENCH_THROTTLE ?? '1 100').trim();
const tmp = makeTmp('sheep-membership-bench-');
const clusterDir = path.join(tmp, 'cl');
const dataFile = path.join(tmp, 'data');
const mb = (bytes) => bytes / 1e6;

/** Runs a command to completion; rejects on a non-zero exit (with all of stderr). */
const run = (command, args, { stdin = 'ignore', hash = false } = {}) =>
  runCommand(command, args, {
    stdin,
    hash,
    describeFailure: ({ command, args, err, code, signal }) =>
      `${path.basename(args[0] ?? command)} ${args.slice(1).join(' ')}: ${err.trim() || `exit ${code ?? signal}`}`,
  });

const dog = (args, options, port = basePort) => run(process.execPath, dogArgv(args, port), options);

// ---- sheep processes: SIGKILLed at the end whatever happens

const sheep = new Map();
const storeDir = (i) => path.join(tmp, `s${i}`);

async function startSheep(i) {
  const port = basePort + i;
  const child = spawnDaemon(process.execPath, [sheepBin, ...sheepArgv({ addr: '127.0.0.1', port, zone: i, clusterDir, store: storeDir(i) })]);
  sheep.set(i, child);
  for (const deadline = Date.now() + 30_000; ; ) {
    if (child.exitCode !== null) throw new Error(`sheep ${i} exited: ${(await child.exited).err.trim()}`);
    const list = await dog(['node', 'list', '-r'], {}, port).catch(() => undefined);
    if (list?.out.includes(` 127.0.0.1:${port} `)) return;
    if (Date.now() > deadline) throw new Error(`sheep ${i} did not join`);
    await sleep(200);
  }
}

async function killSheep(i) {
  const child = sheep.get(i);
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await child.exited;
}

const live = () => [...sheep.keys()].filter((i) => sheep.get(i).exitCode === null && sheep.get(i).signalCode === null).sort();

async function cleanup() {
  await Promise.all([...sheep.keys()].map(killSheep));
  removeTmp(tmp);
}

exitOnSignals(cleanup);

// ---- store directories

function objectFiles(i) {
  try {
    return fs.readdirSync(path.join(storeDir(i), 'obj')).filter((name) => /^[0-9a-f]{16}$/.test(name));
  } catch {
    return [];
  }
}

function holders(stores) {
  const all = new Map();
  for (const i of stores) for (const oid of objectFiles(i)) all.set(oid, (all.get(oid) ?? 0) + 1);
  return all;
}

/** Every object has exactly `copies` holders among the live stores (min(copies, stores)). */
function fullCopies(stores) {
  const want = Math.min(copies, stores.length);
  const all = holders(stores);
  return all.size > 0 && [...all.values()].every((n) => n === want);
}

async function waitForFullCopies(timeoutMs = 1_800_000) {
  const started = Date.now();
  let stableSince;
  for (;;) {
    if (fullCopies(live())) {
      stableSince ??= Date.now();
      const idle = (await dog(['node', 'recovery'], {}, basePort + live()[0]).catch(() => ({ out: '' }))).out.split('\n').filter(Boolean).length === 2;
      if (idle) return (stableSince - started) / 1000;
    } else {
      stableSince = undefined;
    }
    if (Date.now() - started > timeoutMs) throw new Error('recovery did not complete in time');
    await sleep(200);
  }
}

/** Kills sheep `victim`, times until every object has its copies again, measuring latency meanwhile. */
async function recoveryRound(victim) {
  const before = holders(live());
  await killSheep(victim);
  const remaining = live();
  // Copies to make: for each object, what the live stores lack.
  const want = Math.min(copies, remaining.length);
  const afterKill = holders(remaining);
  let missing = 0;
  for (const oid of before.keys()) missing += want - (afterKill.get(oid) ?? 0);
  const started = Date.now();
  let done = false;
  const latency = measureWrites({ port: basePort + remaining[0], name: 'bench', dataFile, shouldStop: () => done, maxMs: 3_600_000, minWrites: 10 });
  let seconds;
  for (;;) {
    if (fullCopies(remaining)) {
      seconds = (Date.now() - started) / 1000;
      break;
    }
    if (Date.now() - started > 1_800_000) throw new Error('recovery did not complete in time');
    await sleep(200);
  }
  done = true;
  const lat = await latency;
  await waitForFullCopies(); // and recovery idle everywhere
  return { seconds, bytes: missing * objectBytes, rate: mb(missing * objectBytes) / seconds, lat };
}

function recoveryLines(i) {
  try {
    return fs
      .readFileSync(path.join(storeDir(i), 'sheep.log'), 'utf8')
      .split('\n')
      .filter((line) => line.includes('"recovery finished"'))
      .map((line) => JSON.parse(line));
  } catch {
    return [];
  }
}

// ---- the run

const rows = [];
const row = (figure, value, baseline, ratio, aim) => rows.push([figure, value, baseline, ratio, aim]);

async function main() {
  console.log(`membership bench: ${(size / 2 ** 30).toFixed(2)} GiB, copies ${copies}, temp dir ${tmp}`);
  writeRandomFile(dataFile, size, { chunkBytes: 1 << 24 });

  for (const i of [0, 1, 2, 3]) await startSheep(i);
  await dog(['cluster', 'format', '-c', String(copies)]);
  await dog(['vdi', 'create', 'bench', String(size)]);
  const write = await dog(['vdi', 'write', 'bench'], { stdin: dataFile });
  const writeRate = mb(size) / write.seconds;
  console.log(`write: ${writeRate.toFixed(1)} MB/s (${write.seconds.toFixed(1)} s)`);
  row('cluster write (dog vdi write, 3 copies)', `${writeRate.toFixed(1)} MB/s`, '', '', '');
  await waitForFullCopies();

  const idle = await measureWrites({ port: basePort, name: 'bench', dataFile, maxMs: 10_000, minWrites: 200 });
  console.log(`idle 4 KiB writes: ${idle.count}, p50 ${idle.p50.toFixed(2)} ms, p99 ${idle.p99.toFixed(2)} ms`);
  row('4 KiB write p99, idle', `${idle.p99.toFixed(2)} ms`, '', '', '');

  // Recovery without throttle: node 3 dies.
  const free = await recoveryRound(3);
  console.log(`recovery: ${mb(free.bytes).toFixed(0)} MB in ${free.seconds.toFixed(1)} s = ${free.rate.toFixed(1)} MB/s; 4 KiB writes meanwhile: ${free.lat.count}, p99 ${free.lat.p99.toFixed(2)} ms`);
  row('recovery rate (kill 1 of 4)', `${free.rate.toFixed(1)} MB/s`, `${writeRate.toFixed(1)} MB/s write`, (free.rate / writeRate).toFixed(2), '>= 0.5');
  row('4 KiB write p99 during recovery', `${free.lat.p99.toFixed(2)} ms`, `${idle.p99.toFixed(2)} ms idle`, (free.lat.p99 / idle.p99).toFixed(1), '< 5');
  await startSheep(3);
  await waitForFullCopies();

  if (throttle !== 'off') {
    const [max, interval] = throttle.split(/\s+/);
    await dog(['node', 'recovery', 'set-throttle', max, interval]);
    const slow = await recoveryRound(2);
    console.log(`throttled recovery (${max}/${interval} ms): ${slow.rate.toFixed(1)} MB/s, p99 ${slow.lat.p99.toFixed(2)} ms`);
    row(`recovery rate, throttle ${max} obj/${interval} ms`, `${slow.rate.toFixed(1)} MB/s`, `${writeRate.toFixed(1)} MB/s write`, (slow.rate / writeRate).toFixed(2), '>= 0.5');
    row(`4 KiB write p99, recovery throttled`, `${slow.lat.p99.toFixed(2)} ms`, `${idle.p99.toFixed(2)} ms idle`, (slow.lat.p99 / idle.p99).toFixed(1), '< 5');
    await dog(['node', 'recovery', 'set-throttle', '1000', '1']); // the least throttling there is
    await startSheep(2);
    await waitForFullCopies();
  }

  // Rebalancing: a fifth node.
  await startSheep(4);
  const joinSeconds = await waitForFullCopies();
  const all = holders(live());
  const totalCopies = [...all.values()].reduce((a, b) => a + b, 0);
  const share = objectFiles(4).length / totalCopies;
  console.log(`fifth node: ${objectFiles(4).length} of ${totalCopies} copies (${joinSeconds.toFixed(1)} s)`);
  row('share of copies moved to a 5th node', share.toFixed(3), '0.200 ideal', (share / 0.2).toFixed(2), '0.9-1.1');

  // Differential recovery: node 1 misses one 4 KiB write.
  await killSheep(1);
  await waitForFullCopies();
  const held = objectFiles(1).filter((oid) => oid.startsWith('00'));
  const index = parseInt(held[0].slice(8), 16);
  const patch = Buffer.alloc(4096, 0x5a);
  const patchFile = path.join(tmp, 'patch');
  fs.writeFileSync(patchFile, patch);
  const offset = index * objectBytes + 4096;
  await dog(['vdi', 'write', 'bench', String(offset), '4096'], { stdin: patchFile });
  const fd = fs.openSync(dataFile, 'r+');
  fs.writeSync(fd, patch, 0, patch.length, offset);
  fs.closeSync(fd);
  const linesBefore = recoveryLines(1).length;
  await startSheep(1);
  await waitForFullCopies();
  await sleep(500);
  const lines = recoveryLines(1).slice(linesBefore);
  const received = lines.reduce((sum, l) => sum + l.received, 0);
  const heldBytes = objectFiles(1).length * objectBytes;
  console.log(`differential: received ${received} bytes over ${lines.length} recoveries; holds ${mb(heldBytes).toFixed(0)} MB`);
  row('bytes received after 1 small write missed', `${mb(received).toFixed(2)} MB`, `${mb(heldBytes).toFixed(0)} MB held`, `${((received / heldBytes) * 100).toFixed(2)}%`, '< 1%');

  const check = await dog(['vdi', 'read', 'bench'], { hash: true }, basePort + 4);
  const expected = await fileMd5(dataFile);
  if (check.md5 !== expected) throw new Error(`read back md5 ${check.md5}, expected ${expected}`);
  console.log(`read back through the fifth node: md5 ${check.md5} matches`);

  const header = ['figure', 'value', 'baseline', 'ratio', 'aim'];
  console.log(`\nmembership: ${(size / 2 ** 30).toFixed(2)} GiB, 4 nodes + 1, copies ${copies}, 4 MiB objects`);
  printTable(header, rows);
}

try {
  await main();
  await cleanup();
} catch (error) {
  console.error(`membership bench failed: ${error.stack ?? error}`);
  for (const i of sheep.keys()) {
    try {
      console.error(`--- sheep ${i} log tail:\n${fs.readFileSync(path.join(storeDir(i), 'sheep.log'), 'utf8').split('\n').slice(-5).join('\n')}`);
    } catch {}
  }
  await cleanup();
  process.exit(1);
}
