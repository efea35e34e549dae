#!/usr/bin/env node
// Foundation benchmark: sequential VDI throughput through `dog vdi write` / `dog vdi read` on a fresh
// three-node local cluster, beside `dd` on the same disk measured in the same run.
//
// - One data file of BENCH_SIZE random bytes (default 1 GiB) is written once into the temp dir and
//   stays in page cache, so both sides read their input from memory.
// - Writes: `dog vdi write NAME < data` (acknowledged only when every copy is on stable storage)
//   against `dd if=data of=localfile bs=4M conv=notrunc,fsync`. dd's first write to a new file is reported
//   as "fresh"; then one rewrite warms up and BENCH_RUNS rewrites are timed. The VDI is the same:
//   its first write (allocating every object) is reported as fresh, one write warms up, then the
//   timed runs.
// - Reads: `dog vdi read NAME > /dev/null` against `dd if=localfile of=/dev/null bs=4M` (page cache,
//   nothing dropped), one warm-up each, then BENCH_RUNS timed. The md5 of one VDI read is checked.
// - Figures are medians of wall-clock time, in MB/s (10^6 bytes), including dog's process start.
//
// Environment: BENCH_SIZE (bytes, or with K/M/G suffix, binary), BENCH_RUNS (3),
// BENCH_DIR (where the temp dir goes, default os.tmpdir()), BENCH_KEEP=1 keeps the temp dir.
import * as fs from 'node:fs';
import path from 'node:path';
import {
  dogArgv, exitOnSignals, fileMd5, gibText, joinAndFormat, makeTmp, parseSize, removeTmp, run, sheepArgv, sheepBin,
  spawnDaemon, stopDaemons, throughput, writeRandomFile, printTable, recordTargets, runOnce,
} from './lib.mjs';

const ports = [7600, 7601, 7602];
const addr = '127.0.0.1';

const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
const tmp = makeTmp('sheep-bench-');
const dataFile = path.join(tmp, 'data');
const localFile = path.join(tmp, 'localfile');

const dog = (args, options) => run(process.execPath, dogArgv(args, ports[0], addr), options);
const { mbps, timed } = throughput(size, runs);

// ---- the cluster: three sheep in the foreground, killed at the end whatever happens
const sheep = [];
async function startCluster() {
  const clusterDir = path.join(tmp, 'cluster');
  for (const [i, port] of ports.entries()) {
    spawnDaemon(process.execPath, [sheepBin, ...sheepArgv({ addr, port, zone: i, clusterDir, store: path.join(tmp, `store${i}`) })], sheep);
  }
  await joinAndFormat(dog, { addr, count: ports.length, children: sheep, logs: `${tmp}/store*/sheep.log` });
}

const cleanup = runOnce(async () => {
  await stopDaemons(sheep).catch(() => undefined);
  removeTmp(tmp);
});
exitOnSignals(cleanup, (signal) => `foundation bench: ${signal}, stopping the cluster`);

// ---- measurements
// notrunc: a rewrite in place, as the VDI's rewrite is (a truncating dd allocates afresh).
const ddWrite = () => run('dd', [`if=${dataFile}`, `of=${localFile}`, 'bs=4M', 'conv=notrunc,fsync', 'status=none']);
const ddRead = () => run('dd', [`if=${localFile}`, 'of=/dev/null', 'bs=4M', 'status=none']);
const vdiWrite = (name) => dog(['vdi', 'write', name], { stdin: dataFile });
const vdiRead = (name) => dog(['vdi', 'read', name], { stdout: '/dev/null' });

async function main() {
  const gib = gibText(size);
  console.log(`foundation bench: ${gib} GiB, ${runs} timed runs after one warm-up, temp dir ${tmp}`);
  writeRandomFile(dataFile, size);
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
    if (copies === 3) {
      recordTargets([{ workload: `dog vdi write ${gib} GiB rewrite, copies 3`, value: write, baseline: ddWriteMbps, unit: 'MB/s', baselineUnit: 'MB/s dd conv=notrunc,fsync', aim: { min: 0.25 } }]);
    }
  }

  const header = ['test', 'MB/s', 'baseline MB/s', 'ratio', 'aim'];
  const lines = rows.map(({ test, value, base, aim }) => {
    const ratio = value / base;
    const verdict = aim === undefined ? '(info)' : `>= ${aim} ${ratio >= aim ? 'met' : 'MISSED'}`;
    return [test, value.toFixed(0), base.toFixed(0), ratio.toFixed(2), verdict];
  });
  console.log(`\nfoundation: ${gib} GiB sequential, median of ${runs}; baseline = dd bs=4M on the same disk (write conv=notrunc,fsync)`);
  printTable(header, lines, (column) => column !== 0);
}

try {
  await main();
  await cleanup();
} catch (error) {
  await cleanup();
  console.error(`foundation bench: error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
