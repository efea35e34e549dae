#!/usr/bin/env node
// sheepfs benchmark: `dd bs=4M` into (conv=fsync) and out of volume/NAME on a three-node cluster
// (copies 3) mounted through sheepfs, beside dd to/from a local file and beside the FUSE ceiling:
// a 1 GiB in-memory file served by fuse-native with sheepfs's own FUSE options
// (bench/fuse-memfile.mjs, its own process). All in one run; figures are medians in MB/s (10^6
// bytes) of BENCH_RUNS timed runs after one warm-up, printed with ratios.
//
// Environment: BENCH_SIZE (bytes or K/M/G, default 1G), BENCH_RUNS (3), BENCH_DIR (temp dir
// parent), BENCH_KEEP=1 keeps the temp dir, SHEEPFS_PROF=DIR runs sheepfs with --cpu-prof there.
// Needs root (FUSE), a built dist/ (npx tsc -p tsconfig.json) and ports 7650-7652 free.
import * as fs from 'node:fs';
import path from 'node:path';
import {
  dogArgv, dogBin, exitOnSignals, forceUnmount, gibText, joinAndFormat, makeTmp, parseSize, removeTmp, repo, run as runCommand,
  recordTargets, sheepArgv, sheepBin, spawnDaemon, stopDaemons, throughput, waitForMount, writeRandomFile, runOnce,
} from './lib.mjs';

const sheepfsBin = path.join(repo, 'bin', 'sheepfs');
const memfileScript = path.join(repo, 'bench', 'fuse-memfile.mjs');
const ports = [7650, 7651, 7652];
const addr = '127.0.0.1';
const vdiName = 'benchfs';

const size = parseSize(process.env.BENCH_SIZE ?? '1G');
const runs = Number(process.env.BENCH_RUNS ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error('BENCH_RUNS: expected a positive integer');
if (size % (4 << 20) !== 0) throw new Error('BENCH_SIZE: must be a multiple of 4 MiB (dd bs=4M)');
const tmp = makeTmp('sheepfs-bench-');
const dataFile = path.join(tmp, 'data');
const localFile = path.join(tmp, 'localfile');
const fsMnt = path.join(tmp, 'sheepfs');
const memMnt = path.join(tmp, 'memfile');
const commandTimeoutMs = 600_000;

/** Runs a command (killed at the timeout); resolves with wall seconds, stdout and stderr. */
const run = (command, args, { timeoutMs = commandTimeoutMs } = {}) => runCommand(command, args, { timeoutMs });

const sh = (command, options) => run('bash', ['-c', command], options);
const dog = (args) => run(process.execPath, dogArgv(args, ports[0], addr));
const { mbps, timed: timedRuns } = throughput(size, runs);

// ---- daemons: sheep, sheepfs, fuse-memfile; all stopped at the end whatever happens
const daemons = [];
function daemon(args, label) {
  const child = spawnDaemon(process.execPath, args, daemons);
  child.label = label;
  return child;
}

const stop = (child) => stopDaemons([child]);

async function startCluster() {
  const clusterDir = path.join(tmp, 'cluster');
  for (const [i, port] of ports.entries()) {
    daemon([sheepBin, ...sheepArgv({ addr, port, zone: i, clusterDir, store: path.join(tmp, `store${i}`) })], `sheep ${port}`);
  }
  await joinAndFormat(dog, { addr, count: ports.length, logs: `${tmp}/store*/sheep.log` });
}

const cleanup = runOnce(async () => {
  // FUSE servers first (they unmount on SIGTERM), then the sheep.
  for (const child of daemons.filter((d) => !d.label.startsWith('sheep '))) await stop(child).catch(() => undefined);
  forceUnmount(fsMnt);
  forceUnmount(memMnt);
  await Promise.all(daemons.map((child) => stop(child).catch(() => undefined)));
  removeTmp(tmp);
});
exitOnSignals(cleanup, (signal) => `sheepfs bench: ${signal}, cleaning up`);

// ---- measurements
async function timed(label, once) {
  await once(); // warm-up
  return timedRuns(label, once);
}

// Plain dd, as in the docs: no conv=notrunc (sheepfs ignores O_TRUNC on volumes).
const ddWrite = (target) => () => run('dd', [`if=${dataFile}`, `of=${target}`, 'bs=4M', 'conv=fsync', 'status=none']);
const ddRead = (source) => () => run('dd', [`if=${source}`, 'of=/dev/null', 'bs=4M', 'status=none']);

async function main() {
  const gib = gibText(size);
  console.log(`sheepfs bench: ${gib} GiB, dd bs=4M, ${runs} timed runs after one warm-up, temp dir ${tmp}`);
  const dataMd5 = writeRandomFile(dataFile, size, { md5: true }); // stays in page cache: every writer reads its input from memory

  console.log('local file (dd on the same disk; reads from page cache):');
  const local = { write: await timed('write', ddWrite(localFile)), read: await timed('read', ddRead(localFile)) };
  fs.rmSync(localFile);

  console.log('FUSE ceiling (fuse-native, one in-memory file, the same FUSE options):');
  fs.mkdirSync(memMnt);
  const memfile = daemon([memfileScript, memMnt, String(size)], 'fuse-memfile');
  await waitForMount(memMnt, memfile, 'fuse-memfile');
  const memTarget = path.join(memMnt, 'file');
  const ceiling = { write: await timed('write', ddWrite(memTarget)), read: await timed('read', ddRead(memTarget)) };
  await stop(memfile);
  forceUnmount(memMnt);

  console.log(`sheepfs: three sheep on ${addr}:${ports.join(',')}, copies 3, a ${gib} GiB VDI:`);
  await startCluster();
  await dog(['vdi', 'create', vdiName, String(size)]);
  fs.mkdirSync(fsMnt);
  const prof = process.env.SHEEPFS_PROF;
  const profArgs = prof ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(prof)] : [];
  const sheepfs = daemon(
    [...profArgs, sheepfsBin, '-f', '-a', addr, '-p', String(ports[0]), '--log', path.join(tmp, 'sheepfs.log'), '--log-level', 'warn', fsMnt],
    'sheepfs',
  );
  await waitForMount(fsMnt, sheepfs, 'sheepfs');
  await sh(`echo ${vdiName} > '${fsMnt}/vdi/mount'`, { timeoutMs: 30_000 });
  const volume = path.join(fsMnt, 'volume', vdiName);
  const fresh = mbps((await ddWrite(volume)()).seconds); // allocates every object
  console.log(`  write, fresh VDI: ${fresh.toFixed(0)} MB/s`);
  const fsWrite = await timed('write (overwrite)', ddWrite(volume));
  const fsRead = await timed('read', ddRead(volume));
  const readBack = (await sh(`dd if='${volume}' bs=4M status=none | md5sum`)).out.split(' ')[0];
  if (readBack !== dataMd5) throw new Error(`read back through sheepfs: md5 ${readBack}, expected ${dataMd5}`);
  await stop(sheepfs);
  // The cluster's own pace for the same VDI, without FUSE: dog streams stdin/stdout over rpc.
  const dogWrite = () => run('bash', ['-c', `'${process.execPath}' '${dogBin}' vdi write ${vdiName} -a ${addr} -p ${ports[0]} < '${dataFile}'`]);
  const dogRead = () => run('bash', ['-c', `'${process.execPath}' '${dogBin}' vdi read ${vdiName} -a ${addr} -p ${ports[0]} > /dev/null`]);
  console.log('dog vdi write/read of the same VDI (no FUSE):');
  const viaDog = { write: await timed('write', dogWrite), read: await timed('read', dogRead) };
  if (prof) console.log(`  cpu profile of sheepfs in ${path.resolve(prof)}`);

  recordTargets([
    { workload: 'sheepfs dd write, copies 3', value: fsWrite, baseline: ceiling.write, unit: 'MB/s', baselineUnit: 'MB/s in-memory FUSE file', aim: { min: 0.5 } },
    { workload: 'sheepfs dd read, copies 3', value: fsRead, baseline: ceiling.read, unit: 'MB/s', baselineUnit: 'MB/s in-memory FUSE file', aim: { min: 0.7 } },
  ]);
  const ratio = (a, b) => (a / b).toFixed(2);
  console.log('\nmedians, MB/s          write    read');
  console.log(`  local file        ${local.write.toFixed(0).padStart(7)} ${local.read.toFixed(0).padStart(7)}`);
  console.log(`  FUSE ceiling      ${ceiling.write.toFixed(0).padStart(7)} ${ceiling.read.toFixed(0).padStart(7)}`);
  console.log(`  sheepfs, copies 3 ${fsWrite.toFixed(0).padStart(7)} ${fsRead.toFixed(0).padStart(7)}   (fresh VDI write ${fresh.toFixed(0)})`);
  console.log(`  dog vdi write/read${viaDog.write.toFixed(0).padStart(7)} ${viaDog.read.toFixed(0).padStart(7)}`);
  console.log(`  sheepfs / ceiling ${ratio(fsWrite, ceiling.write).padStart(7)} ${ratio(fsRead, ceiling.read).padStart(7)}   (aim: >= 0.50 write, >= 0.70 read)`);
  console.log(`  sheepfs / local   ${ratio(fsWrite, local.write).padStart(7)} ${ratio(fsRead, local.read).padStart(7)}`);
  console.log(`  sheepfs / dog     ${ratio(fsWrite, viaDog.write).padStart(7)} ${ratio(fsRead, viaDog.read).padStart(7)}`);
  console.log(`  read-back md5 ok (${dataMd5})`);
}

try {
  await main();
  await cleanup();
  process.exit(0);
} catch (error) {
  console.error(`sheepfs bench failed: ${error instanceof Error ? error.message : String(error)}`);
  for (const child of daemons) {
    const { err } = child.exitCode !== null ? await child.exited : { err: '' };
    if (err.trim() !== '') console.error(`--- ${child.label} stderr:\n${err.trim().split('\n').slice(-10).join('\n')}`);
  }
  await cleanup();
  process.exit(1);
}
