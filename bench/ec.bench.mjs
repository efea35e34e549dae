#!/usr/bin/env node
// Erasure coding benchmark: a 4:2 VDI beside a copies 3 VDI on one six-sheep local cluster (zones
// 0-5), in the same run.
//
// - One data file of BENCH_SIZE random bytes (default 1 GiB) stays in page cache.
// - Each VDI: its first write (allocating every object), one warm-up rewrite, BENCH_RUNS timed
//   rewrites (`dog vdi write NAME < data`), the md5 of a read checked, one warm-up read and
//   BENCH_RUNS timed reads (`dog vdi read NAME > /dev/null`). Medians of wall-clock MB/s (10^6).
// - Bytes on disk: the space the store's files of each VDI take (st_blocks), over the data size:
//   4:2 should take 1.5x (plus a 4 KiB header per 1 MiB strip), copies 3 3x.
// - Degraded read: recovery disabled, one sheep (not the one dog asks) killed with SIGKILL, the
//   4:2 VDI read again (strips of the dead node decoded from the others), md5 checked.
//
// Environment: BENCH_SIZE, BENCH_RUNS (3), BENCH_DIR, BENCH_KEEP=1, BENCH_EC_PORT (first of six
// ports, default 7660).
import * as fs from 'node:fs';
import path from 'node:path';
import {
  dogArgv, exitOnSignals, fileMd5, gibText, joinAndFormat, makeTmp, parseSize, removeTmp, run, sheepArgv, sheepBin,
  sleep, spawnDaemon, stopDaemons, throughput, writeRandomFile, printTable, runOnce,
} from './lib.mjs';

const basePort = Number(process.env.BENCH_EC_PORT ?? 7660);
const ports = Array.from({ length: 6 }, (_, i) => basePort + i);
const addr = '127.0.0.1';
const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS '${process.env.BENCH_RUNS}': expected a positive integer`);
const tmp = makeTmp('sheep-bench-ec-');
const dataFile = path.join(tmp, 'data');
const store = (i) => path.join(tmp, `store${i}`);

const dog = (args, options) => run(process.execPath, dogArgv(args, ports[0], addr), options);
const { mbps, timed } = throughput(size, runs);

const sheep = [];
async function startCluster() {
  const clusterDir = path.join(tmp, 'cluster');
  for (const [i, port] of ports.entries()) {
    spawnDaemon(process.execPath, [sheepBin, ...sheepArgv({ addr, port, zone: i, clusterDir, store: store(i) })], sheep);
  }
  await joinAndFormat(dog, { addr, count: ports.length, children: sheep, logs: `${tmp}/store*/sheep.log` });
}

const cleanup = runOnce(async () => {
  await stopDaemons(sheep).catch(() => undefined);
  removeTmp(tmp);
});
exitOnSignals(cleanup, (signal) => `ec bench: ${signal}, stopping the cluster`);

/** Bytes the object files of VDI `vid` take on every store (data, strips and owner table). */
function bytesOnDisk(vid) {
  const hex = vid.toString(16).padStart(6, '0');
  let bytes = 0;
  for (let i = 0; i < ports.length; i++) {
    for (const name of fs.readdirSync(path.join(store(i), 'obj'))) {
      if (/^[0-9a-f]{16}$/.test(name) && name.slice(2, 8) === hex) bytes += fs.statSync(path.join(store(i), 'obj', name)).blocks * 512;
    }
  }
  return bytes;
}

async function vidOf(name) {
  const { out } = await dog(['vdi', 'list', '-r', name]);
  return parseInt(out.trim().split(' ')[7], 16);
}

async function measure(name, label, dataMd5) {
  const write = () => dog(['vdi', 'write', name], { stdin: dataFile });
  const read = () => dog(['vdi', 'read', name], { stdout: '/dev/null' });
  const fresh = mbps((await write()).seconds);
  console.log(`  ${label} write, fresh VDI: ${fresh.toFixed(0)} MB/s`);
  await write();
  const rewrite = await timed(`${label} write`, write);
  await checkMd5(name, label, dataMd5);
  await read();
  const readMbps = await timed(`${label} read`, read);
  const disk = bytesOnDisk(await vidOf(name));
  console.log(`  ${label} on disk: ${(disk / 2 ** 20).toFixed(0)} MiB for ${(size / 2 ** 20).toFixed(0)} MiB of data (${(disk / size).toFixed(2)}x)`);
  return { fresh, write: rewrite, read: readMbps, disk };
}

async function checkMd5(name, label, dataMd5) {
  const check = await dog(['vdi', 'read', name], { hash: true });
  if (check.bytes !== size || check.md5 !== dataMd5) {
    throw new Error(`${label}: read back ${check.bytes} bytes with md5 ${check.md5}, wrote ${size} bytes with md5 ${dataMd5}`);
  }
  console.log(`  ${label} read back: md5 ${check.md5} matches`);
}

async function main() {
  console.log(`ec bench: ${gibText(size)} GiB, ${runs} timed runs after one warm-up, six sheep on ${addr}:${ports[0]}-${ports[5]}, temp dir ${tmp}`);
  writeRandomFile(dataFile, size);
  const dataMd5 = await fileMd5(dataFile);
  await startCluster();
  await dog(['vdi', 'create', '-c', '3', 'bench-c3', String(size)]);
  await dog(['vdi', 'create', '-c', '4:2', 'bench-ec', String(size)]);
  const replicated = await measure('bench-c3', 'copies 3', dataMd5);
  const coded = await measure('bench-ec', '4:2', dataMd5);

  // Degraded: one node gone, nothing rebuilt meanwhile.
  await dog(['cluster', 'recover', 'disable']);
  sheep[5].kill('SIGKILL');
  await sheep[5].exited;
  for (let tries = 0; ; tries++) {
    const { out } = await dog(['node', 'list', '-r']);
    if (out.trim().split('\n').length === 5) break;
    if (tries > 100) throw new Error('the killed sheep was never reported gone');
    await sleep(200);
  }
  await checkMd5('bench-ec', '4:2 degraded', dataMd5);
  const degraded = await timed('4:2 read, one node down', () => dog(['vdi', 'read', 'bench-ec'], { stdout: '/dev/null' }));

  const rows = [
    ['4:2 write, fresh VDI', coded.fresh, replicated.fresh, undefined],
    ['4:2 write', coded.write, replicated.write, 1],
    ['4:2 read', coded.read, replicated.read, undefined],
    ['4:2 read, one node down', degraded, coded.read, 0.5],
  ].map(([test, value, base, aim]) => {
    const ratio = value / base;
    const verdict = aim === undefined ? '(info)' : `>= ${aim} ${ratio >= aim ? 'met' : 'MISSED'}`;
    return [test, value.toFixed(0), base.toFixed(0), ratio.toFixed(2), verdict];
  });
  console.log(`\nec: ${gibText(size)} GiB sequential, median of ${runs}; baseline = copies 3 on the same cluster (degraded: the healthy 4:2 read)`);
  printTable(['test', 'MB/s', 'baseline MB/s', 'ratio', 'aim'], rows, (column) => column !== 0);
  console.log(`\nbytes on disk: 4:2 ${(coded.disk / size).toFixed(2)}x the data, copies 3 ${(replicated.disk / size).toFixed(2)}x`);
}

try {
  await main();
  await cleanup();
} catch (error) {
  await cleanup();
  console.error(`ec bench: error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
