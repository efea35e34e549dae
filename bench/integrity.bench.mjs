#!/usr/bin/env node
// Integrity benchmark: what block checksums cost the write path. The same copies-3 sequential
// write through `dog vdi write` on a fresh three-node cluster, once with block sums (the
// default) and once with the store told to keep none (SHEEP_BENCH_NO_BLOCK_SUMS=1, a knob for
// this benchmark only). Aim: with sums at least 0.9 of without. Also a copies-3 read each way
// (every read verifies its blocks), for information.
//
// Both clusters run side by side; each gets one fresh write (allocates every object) and one
// warm-up, then the timed writes alternate between them (so the machine's load weighs on both
// alike), an md5 check of one read each, then alternating timed reads. Medians, MB/s.
// Environment: BENCH_SIZE (default 1G), BENCH_RUNS (3), BENCH_DIR, BENCH_KEEP=1.
import path from 'node:path';
import {
  dogArgv, exitOnSignals, fileMd5, gibText, joinAndFormat, makeTmp, median, parseSize, printTable, removeTmp, run, sheepArgv, sheepBin,
  spawnDaemon, stopDaemons, throughput, writeRandomFile, runOnce,
} from './lib.mjs';

const clusters = {
  without: { sums: false, ports: [8490, 8491, 8492] },
  with: { sums: true, ports: [8493, 8494, 8495] },
};
const addr = '127.0.0.1';
const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
const tmp = makeTmp('sheep-bench-integrity-');
const dataFile = path.join(tmp, 'data');
const dogAt = (port) => (args, options) => run(process.execPath, dogArgv(args, port, addr), options);
const { mbps } = throughput(size, runs);

const sheep = [];
const cleanup = runOnce(async () => {
  await stopDaemons(sheep).catch(() => undefined);
  removeTmp(tmp);
});
exitOnSignals(cleanup, (signal) => `integrity bench: ${signal}, stopping the clusters`);

/** A cluster in its own directories; `sums` false turns block sums off in every sheep. */
async function startCluster(label, { sums, ports }) {
  const dir = path.join(tmp, label);
  const env = { ...process.env };
  if (sums) delete env.SHEEP_BENCH_NO_BLOCK_SUMS;
  else env.SHEEP_BENCH_NO_BLOCK_SUMS = '1';
  const saved = process.env;
  process.env = env; // spawnDaemon passes the environment on
  const children = [];
  for (const [i, port] of ports.entries()) {
    spawnDaemon(process.execPath, [sheepBin, ...sheepArgv({ addr, port, zone: i, clusterDir: path.join(dir, 'cluster'), store: path.join(dir, `store${i}`) }), '--scrub', 'off'], children);
  }
  process.env = saved;
  sheep.push(...children);
  const dog = dogAt(ports[0]);
  await joinAndFormat(dog, { addr, count: ports.length, children, logs: `${dir}/store*/sheep.log` });
  await dog(['vdi', 'create', '-c', '3', 'bench-c3', String(size)]);
  await dog(['vdi', 'write', 'bench-c3'], { stdin: dataFile }); // fresh: allocates every object
  await dog(['vdi', 'write', 'bench-c3'], { stdin: dataFile }); // warm-up
  return dog;
}

/**
 * Runs `once` on both clusters in turn, `runs` times (the machine's load then weighs on both
 * alike), prints each figure; returns the medians in MB/s.
 */
async function alternate(label, once, dogs) {
  const seconds = { without: [], with: [] };
  for (let i = 0; i < runs; i++) for (const side of ['without', 'with']) seconds[side].push((await once(dogs[side])).seconds);
  const result = {};
  for (const side of ['without', 'with']) {
    result[side] = mbps(median(seconds[side]));
    console.log(`  ${side} block sums: ${label}: ${seconds[side].map((s) => mbps(s).toFixed(0)).join(', ')} MB/s -> median ${result[side].toFixed(0)}`);
  }
  return result;
}

async function main() {
  console.log(`integrity bench: ${gibText(size)} GiB, ${runs} timed runs each after one warm-up, temp dir ${tmp}`);
  writeRandomFile(dataFile, size);
  const dataMd5 = await fileMd5(dataFile);
  const dogs = { without: await startCluster('without', clusters.without), with: await startCluster('with', clusters.with) };
  const write = await alternate('copies 3 write', (dog) => dog(['vdi', 'write', 'bench-c3'], { stdin: dataFile }), dogs);
  for (const side of ['without', 'with']) {
    const check = await dogs[side](['vdi', 'read', 'bench-c3'], { hash: true });
    if (check.bytes !== size || check.md5 !== dataMd5) throw new Error(`${side} block sums: read back md5 ${check.md5}, wrote ${dataMd5}`);
  }
  const read = await alternate('copies 3 read', (dog) => dog(['vdi', 'read', 'bench-c3'], { stdout: '/dev/null' }), dogs);
  const ratio = (a, b) => (a / b).toFixed(2);
  console.log(`\nintegrity: ${gibText(size)} GiB sequential, median of ${runs}, runs alternating; baseline = the same cluster without block sums`);
  printTable(
    ['test', 'with MB/s', 'without MB/s', 'ratio', 'aim'],
    [
      ['copies 3 write', write.with.toFixed(0), write.without.toFixed(0), ratio(write.with, write.without), `>= 0.9 ${write.with / write.without >= 0.9 ? 'met' : 'MISSED'}`],
      ['copies 3 read', read.with.toFixed(0), read.without.toFixed(0), ratio(read.with, read.without), '(info)'],
    ],
    (column) => column !== 0,
  );
}

try {
  await main();
  await cleanup();
} catch (error) {
  await cleanup();
  console.error(`integrity bench: error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
