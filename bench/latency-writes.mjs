#!/usr/bin/env node
// Foreground write latency: 4 KiB writes, one at a time, at random 4 KiB-aligned offsets of a VDI,
// through one sheep's gateway (the same SheepClient + VolumeIo that dog uses, but one process, so
// each figure is the write itself, not a process start). Needs `npx tsc` (imports dist/).
//
// Used by bench/membership.bench.mjs (import { measureWrites }); runnable alone:
//   node bench/latency-writes.mjs PORT VDI [SECONDS=10] [DATAFILE]
// With DATAFILE, each write puts back the bytes DATAFILE has at that offset, so a VDI written from
// DATAFILE keeps its content (its md5 can still be checked afterwards).
import * as fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { repo } from './lib.mjs';

const { SheepClient } = await import(pathToFileURL(path.join(repo, 'dist', 'rpc', 'sheep-client.js')).href);
const { VolumeIo } = await import(pathToFileURL(path.join(repo, 'dist', 'volume', 'volume-io.js')).href);

const blockBytes = 4096;

export function percentile(sortedMs, p) {
  if (sortedMs.length === 0) return NaN;
  return sortedMs[Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1)];
}

/**
 * Writes until `shouldStop()` is true (checked between writes) or `maxMs` passed; at least
 * `minWrites`. Resolves with the count and p50/p99/max in ms.
 */
export async function measureWrites({ port, name, dataFile, shouldStop = () => false, maxMs = 10_000, minWrites = 50, host = '127.0.0.1' }) {
  const client = new SheepClient(host, port);
  try {
    const volume = new VolumeIo(client, await client.lookup(name, undefined));
    const blocks = Math.floor(volume.info.sizeBytes / blockBytes);
    const fd = dataFile ? fs.openSync(dataFile, 'r') : undefined;
    const buffer = Buffer.alloc(blockBytes);
    const times = [];
    const started = Date.now();
    // One warm-up write: connection and owner table load are not foreground-write latency.
    await volume.write(0, dataFile ? (fs.readSync(fd, buffer, 0, blockBytes, 0), buffer) : buffer);
    while (times.length < minWrites || (!shouldStop() && Date.now() - started < maxMs)) {
      const offset = Math.floor(Math.random() * blocks) * blockBytes;
      if (fd !== undefined) fs.readSync(fd, buffer, 0, blockBytes, offset);
      else buffer.fill(times.length & 0xff);
      const t0 = process.hrtime.bigint();
      await volume.write(offset, buffer);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (times.length >= 200_000) break;
    }
    if (fd !== undefined) fs.closeSync(fd);
    const sorted = [...times].sort((a, b) => a - b);
    return { count: times.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) };
  } finally {
    client.close();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [portText, name, secondsText = '10', dataFile] = process.argv.slice(2);
  if (!portText || !name) {
    console.error('usage: node bench/latency-writes.mjs PORT VDI [SECONDS=10] [DATAFILE]');
    process.exit(64);
  }
  const result = await measureWrites({ port: Number(portText), name, dataFile, maxMs: Number(secondsText) * 1000 });
  console.log(`${result.count} writes of 4 KiB: p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, max ${result.max.toFixed(2)} ms`);
}
