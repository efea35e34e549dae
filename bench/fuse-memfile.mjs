#!/usr/bin/env node
// The FUSE ceiling for bench/sheepfs.bench.mjs: one file `/file` of SIZE bytes held in memory,
// served by fuse-native with exactly sheepfs's FUSE options (imported from dist/fs/sheepfs.js, so
// the two can never differ), and ops shaped like sheepfs's (open/read/write/fsync, O_TRUNC
// ignored). Everything sheepfs does beyond this is the cost of talking to the cluster.
// Usage: node bench/fuse-memfile.mjs MOUNTPOINT SIZE_BYTES   (prints "ready" once mounted;
// SIGTERM/SIGINT unmount and exit 0). Never touch the mount from this process.
import { createRequire } from 'node:module';
import { throughputFuseOptions } from '../dist/fs/sheepfs.js';

const [mountpoint, sizeText] = process.argv.slice(2);
const sizeBytes = Number(sizeText);
if (!mountpoint || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
  console.error('usage: fuse-memfile.mjs MOUNTPOINT SIZE_BYTES');
  process.exit(64);
}

const Fuse = createRequire(import.meta.url)('fuse-native');
const memory = Buffer.alloc(sizeBytes);
const nowMs = Date.now();
const stat = (mode, size) => ({
  mode, uid: process.getuid(), gid: process.getgid(), size, nlink: 1, blksize: 4096,
  blocks: Math.ceil(size / 512), atime: nowMs, mtime: nowMs, ctime: nowMs,
});
const EFBIG = 27;
const ENOENT = 2;

const ops = {
  getattr: (p, cb) => {
    if (p === '/') return cb(0, stat(0o040755, 4096));
    if (p === '/file') return cb(0, stat(0o100600, sizeBytes));
    return cb(-ENOENT);
  },
  readdir: (p, cb) => (p === '/' ? cb(0, ['file']) : cb(-ENOENT)),
  open: (p, _flags, cb) => (p === '/file' ? cb(0, 1) : cb(-ENOENT)),
  release: (_p, _fd, cb) => cb(0),
  read: (_p, _fd, buf, len, pos, cb) => {
    if (pos >= sizeBytes) return cb(0);
    cb(memory.copy(buf, 0, pos, Math.min(pos + len, sizeBytes)));
  },
  write: (_p, _fd, buf, len, pos, cb) => {
    const fits = Math.min(len, sizeBytes - pos);
    if (fits <= 0) return cb(-EFBIG);
    buf.copy(memory, pos, 0, fits);
    cb(fits);
  },
  flush: (_p, _fd, cb) => cb(0),
  fsync: (_p, _datasync, _fd, cb) => cb(0),
  truncate: (_p, _size, cb) => cb(0),
  ftruncate: (_p, _fd, _size, cb) => cb(0),
};

const fuse = new Fuse(mountpoint, ops, { fsname: 'memfile', subtype: 'memfile' });
const own = fuse._fuseOptions.bind(fuse);
fuse._fuseOptions = () => {
  const base = own();
  const extra = throughputFuseOptions.join(',');
  return base === '' ? `-o${extra}` : `${base},${extra}`;
};
fuse.mount((error) => {
  if (error) {
    console.error(`fuse-memfile: cannot mount ${mountpoint}: ${error.message}`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
});
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    fuse.unmount(() => process.exit(0));
  });
}
