// sheepfs: the cluster as plain files over FUSE. The FUSE callbacks (fuse-native) are thin: each
// resolves the path with tree.ts, runs one async handler, and maps failures to errno through
// errno.ts. State (mounted volumes, open handles) lives in one MountState per mount.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { sdError } from '../engine/errors.js';
import { rpcRequestTimeoutMs } from '../engine/limits.js';
import type { Volume } from '../engine/volume.js';
import type { SheepfsBackend } from './backend.js';
import { parseControlWrite, type ControlRequest } from './control.js';
import { errno, fuseErrnoOf, refuse } from './errno.js';
import { fixedChildrenOf, parsePath, type FsPath, type InfoSource } from './tree.js';
import { ReadAhead } from './read-ahead.js';
import { WriteBehind } from './write-behind.js';

/**
 * Appended to fuse-native's own options. Without big_writes the kernel sends 4 KiB writes;
 * direct_io makes every file bypass the page cache: info files read fully whatever size stat
 * reported, and a volume never serves stale pages after a rollback or a write from another node.
 * atomic_o_trunc: the kernel passes O_TRUNC to open instead of sending a separate truncate to 0,
 * so open can ignore it for a volume as a block device does, and `dd of=volume/X` (without
 * conv=notrunc) and `cp` work while an explicit truncate to another size is still refused.
 */
export const throughputFuseOptions = [
  'big_writes',
  'max_write=131072',
  'max_read=131072',
  'direct_io',
  'atomic_o_trunc',
];
/** fuse-native copies the option string into a 1024-byte buffer. */
export const fuseOptionsBytesMax = 1000;
/** A FUSE call gives up (ETIMEDOUT) after this; longer than one rpc so the rpc error wins. */
export const fuseOpTimeoutMs = rpcRequestTimeoutMs + 15_000;
export const mountPollIntervalMs = 1000;
export const openHandlesMax = 65_536;
/** Volume bytes acknowledged to the kernel but not yet to us by the cluster (see write-behind.ts). */
export const writeBehindBytesMax = 32 * 1024 * 1024;

const modeDirectory = 0o040000;
const modeRegular = 0o100000;
const accessModeMask = 3; // O_ACCMODE
const readOnlyAccess = 0; // O_RDONLY

// ---- fuse-native, typed for what we use (it ships no types) ----

type FuseCallback = (result: number, ...values: unknown[]) => void;

interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

interface FuseInstance {
  mount(callback: (error: Error | null) => void): void;
  unmount(callback: (error: Error | null) => void): void;
  _fuseOptions(): string;
}

type FuseConstructor = new (mountpoint: string, ops: object, options: object) => FuseInstance;

const requireCjs = createRequire(import.meta.url);

function loadFuse(): FuseConstructor {
  return requireCjs('fuse-native') as FuseConstructor;
}

// ---- mount state ----

interface MountedVolume {
  spec: string;
  volume: Volume;
  mountedAtMs: number;
  openHandles: number;
  /** Unmounted while open: closed when the last handle goes. */
  detached: boolean;
  /** Writes acknowledged to the kernel and still on their way to the cluster. */
  writer: WriteBehind;
  /** Objects fetched ahead for sequential reads. */
  reader: ReadAhead;
  /** A refresh in progress (see refreshIfIdle), shared by concurrent opens. */
  refreshing?: Promise<void> | undefined;
}

type OpenHandle =
  | { kind: 'info'; text: Buffer }
  | { kind: 'control'; path: FsPath & { kind: 'control' } }
  | { kind: 'volume'; mounted: MountedVolume; writable: boolean };

const infoFetchers: Record<InfoSource, (backend: SheepfsBackend) => Promise<string>> = {
  clusterInfo: (backend) => backend.clusterInfoText(),
  nodeList: (backend) => backend.nodeListText(),
  nodeInfo: (backend) => backend.nodeInfoText(),
  vdiList: (backend) => backend.vdiListText(),
};

class MountState {
  readonly volumes = new Map<string, MountedVolume>();
  /** Mounts in progress, so two concurrent `echo X > vdi/mount` open the volume once. */
  readonly pendingMounts = new Map<string, Promise<MountedVolume>>();
  readonly handles = new Map<number, OpenHandle>();
  private nextHandle = 1;

  constructor(
    readonly backend: SheepfsBackend,
    readonly logger: Logger,
    readonly mountedAtMs: number,
    readonly uid: number,
    readonly gid: number,
  ) {}

  addHandle(handle: OpenHandle): number {
    if (this.handles.size >= openHandlesMax) throw refuse('EBUSY', 'too many open files');
    while (this.handles.has(this.nextHandle) || this.nextHandle === 0) {
      this.nextHandle = (this.nextHandle + 1) % 2 ** 31;
    }
    const fd = this.nextHandle;
    this.nextHandle = (this.nextHandle + 1) % 2 ** 31;
    this.handles.set(fd, handle);
    if (handle.kind === 'volume') handle.mounted.openHandles += 1;
    return fd;
  }

  handle(fd: number): OpenHandle {
    const handle = this.handles.get(fd);
    if (handle === undefined) throw refuse('EBADF', `no open file ${fd}`);
    return handle;
  }

  async releaseHandle(fd: number): Promise<void> {
    const handle = this.handles.get(fd);
    this.handles.delete(fd);
    if (handle?.kind !== 'volume') return;
    handle.mounted.openHandles -= 1;
    if (handle.mounted.detached && handle.mounted.openHandles === 0)
      await closeMounted(this, handle.mounted);
  }

  mountedVolume(spec: string): MountedVolume {
    const mounted = this.volumes.get(spec);
    if (mounted === undefined) throw refuse('ENOENT', `${spec} is not mounted`);
    return mounted;
  }
}

// ---- attributes ----

function directoryStat(state: MountState): FuseStat {
  return statOf(state, modeDirectory | 0o755, 4096, state.mountedAtMs, 2);
}

function statOf(
  state: MountState,
  mode: number,
  sizeBytes: number,
  timeMs: number,
  nlink = 1,
): FuseStat {
  const blocks = Math.ceil(sizeBytes / 512);
  return {
    mode,
    uid: state.uid,
    gid: state.gid,
    size: sizeBytes,
    nlink,
    blksize: 4096,
    blocks,
    atime: timeMs,
    mtime: timeMs,
    ctime: timeMs,
  };
}

async function infoText(state: MountState, source: InfoSource): Promise<Buffer> {
  return Buffer.from(await infoFetchers[source](state.backend), 'utf8');
}

async function getattr(state: MountState, fsPath: FsPath): Promise<FuseStat> {
  switch (fsPath.kind) {
    case 'directory':
    case 'volumeDirectory':
      return directoryStat(state);
    case 'info': {
      // Size of the text as of now: cosmetic for `ls -l`; reads do not depend on it (direct_io).
      const sizeBytes = await infoText(state, fsPath.source).then(
        (text) => text.length,
        () => 0,
      );
      return statOf(state, modeRegular | 0o444, sizeBytes, Date.now());
    }
    case 'control':
      return statOf(state, modeRegular | 0o200, 0, state.mountedAtMs);
    case 'volume': {
      const mounted = state.mountedVolume(fsPath.spec);
      const mode = modeRegular | (mounted.volume.info.readOnly ? 0o400 : 0o600);
      return statOf(state, mode, mounted.volume.info.sizeBytes, mounted.mountedAtMs);
    }
    case 'absent':
      throw refuse('ENOENT', 'no such file');
  }
}

function readdir(state: MountState, fsPath: FsPath): string[] {
  if (fsPath.kind === 'volumeDirectory') return [...state.volumes.keys()];
  if (fsPath.kind === 'directory') return [...fixedChildrenOf(fsPath.path)];
  if (fsPath.kind === 'absent') throw refuse('ENOENT', 'no such directory');
  throw refuse('ENOTDIR', 'not a directory');
}

// ---- open / release ----

async function open(state: MountState, fsPath: FsPath, flags: number): Promise<number> {
  const readOnly = (flags & accessModeMask) === readOnlyAccess;
  switch (fsPath.kind) {
    case 'info':
      if (!readOnly) throw refuse('EACCES', 'info files are read-only');
      // Fetched once per open: a `cat` sees one consistent snapshot of the text.
      return state.addHandle({ kind: 'info', text: await infoText(state, fsPath.source) });
    case 'control':
      if (readOnly) throw refuse('EACCES', 'control files are write-only');
      return state.addHandle({ kind: 'control', path: fsPath });
    case 'volume': {
      // O_TRUNC is ignored, as on a block device: a VDI has a fixed size (see atomic_o_trunc).
      const mounted = state.mountedVolume(fsPath.spec);
      await refreshIfIdle(state, mounted);
      if (!readOnly && mounted.volume.info.readOnly)
        throw refuse('EROFS', `${fsPath.spec} is read-only`);
      return state.addHandle({ kind: 'volume', mounted, writable: !readOnly });
    }
    case 'directory':
    case 'volumeDirectory':
      throw refuse('EISDIR', 'is a directory');
    case 'absent':
      throw refuse('ENOENT', 'no such file');
  }
}

// ---- read / write ----

async function read(
  state: MountState,
  fd: number,
  target: Buffer,
  lengthBytes: number,
  offsetBytes: number,
): Promise<number> {
  const handle = state.handle(fd);
  if (handle.kind === 'info') {
    if (offsetBytes >= handle.text.length) return 0; // Buffer.copy throws past the end
    return handle.text.copy(target, 0, offsetBytes, offsetBytes + lengthBytes);
  }
  if (handle.kind !== 'volume') throw refuse('EBADF', 'not open for reading');
  if (!handle.mounted.writer.idle) await handle.mounted.writer.settle(offsetBytes, lengthBytes);
  const volume = handle.mounted.volume;
  const readBytes = Math.max(0, Math.min(lengthBytes, volume.info.sizeBytes - offsetBytes));
  if (readBytes === 0) return 0;
  const data = await handle.mounted.reader.read(offsetBytes, readBytes);
  return data.copy(target, 0, 0, readBytes);
}

async function write(
  state: MountState,
  fd: number,
  source: Buffer,
  lengthBytes: number,
  offsetBytes: number,
): Promise<number> {
  const handle = state.handle(fd);
  if (handle.kind === 'control') {
    await runControlWrite(state, handle.path.command, source.subarray(0, lengthBytes));
    return lengthBytes;
  }
  if (handle.kind !== 'volume' || !handle.writable) throw refuse('EBADF', 'not open for writing');
  const volume = handle.mounted.volume;
  if (volume.info.readOnly) throw sdError('READ_ONLY', `${handle.mounted.spec} is a snapshot`);
  // POSIX: write what fits before the end, fail only a write that starts at or past it.
  const writeBytes = Math.min(lengthBytes, volume.info.sizeBytes - offsetBytes);
  if (writeBytes <= 0) throw sdError('OUT_OF_RANGE', `offset ${offsetBytes} is past the end`);
  // Copied and queued: the cluster write is acknowledged at fsync/close (write-behind.ts).
  handle.mounted.reader.invalidate();
  await handle.mounted.writer.write(offsetBytes, source.subarray(0, writeBytes));
  return writeBytes;
}

async function flush(state: MountState, fd: number): Promise<void> {
  const handle = state.handle(fd);
  if (handle.kind !== 'volume' || !handle.writable) return;
  await handle.mounted.writer.drain();
  await handle.mounted.volume.flush();
}

function truncate(state: MountState, fsPath: FsPath, sizeBytes: number): void {
  if (fsPath.kind === 'control') return; // `echo x > vdi/mount` opens with O_TRUNC
  if (fsPath.kind === 'volume') {
    const mounted = state.mountedVolume(fsPath.spec);
    if (sizeBytes === mounted.volume.info.sizeBytes) return;
    if (mounted.volume.info.readOnly) throw refuse('EROFS', `${fsPath.spec} is read-only`);
    throw refuse('EPERM', 'a volume keeps the size of its VDI');
  }
  if (fsPath.kind === 'absent') throw refuse('ENOENT', 'no such file');
  throw refuse('EACCES', 'cannot truncate');
}

// ---- control commands ----

async function runControlWrite(
  state: MountState,
  command: ControlRequest['command'],
  data: Buffer,
): Promise<void> {
  const parsed = parseControlWrite(command, data);
  if (!parsed.ok) throw parsed.error;
  for (const request of parsed.value) {
    state.logger.info({ request }, 'control');
    await controlHandlers[request.command](state, request as never);
  }
}

type ControlHandlers = {
  [C in ControlRequest['command']]: (
    state: MountState,
    request: Extract<ControlRequest, { command: C }>,
  ) => Promise<void>;
};

const controlHandlers: ControlHandlers = {
  mount: async (state, request) => {
    await mountVolume(state, request.spec);
  },
  unmount: async (state, request) => {
    await unmountVolume(state, request.spec);
  },
  snapshot: async (state, request) => {
    // Writes acknowledged before the snapshot belong in it.
    await state.volumes.get(request.name)?.writer.settle(0, Number.MAX_SAFE_INTEGER);
    await state.backend.snapshot(request.name, request.tag);
    // The working VDI moves to a new object id; the old one is now the frozen snapshot.
    await reopenVolume(state, request.name);
  },
  rollback: async (state, request) => {
    await state.volumes.get(request.name)?.writer.settle(0, Number.MAX_SAFE_INTEGER);
    await state.backend.rollback(request.name, request.tag);
    await reopenVolume(state, request.name);
  },
  delete: async (state, request) => {
    const spec = request.tag === undefined ? request.name : `${request.name}:${request.tag}`;
    const busy = [...state.volumes.keys()].some(
      (mounted) =>
        mounted === spec || (request.tag === undefined && mounted.startsWith(`${request.name}:`)),
    );
    if (busy) throw sdError('BUSY', `${spec} is mounted: unmount it first`);
    await state.backend.deleteVdi(request.name, request.tag);
  },
  clone: async (state, request) => {
    await state.backend.clone(request.source, request.tag, request.target);
  },
};

async function mountVolume(state: MountState, spec: string): Promise<MountedVolume> {
  const existing = state.volumes.get(spec) ?? state.pendingMounts.get(spec);
  if (existing !== undefined) return existing; // mounting twice is a no-op
  const pending = state.backend.openVolume(spec).then((volume) => {
    const mounted: MountedVolume = {
      spec,
      volume,
      mountedAtMs: Date.now(),
      openHandles: 0,
      detached: false,
      writer: new WriteBehind(() => mounted.volume, writeBehindBytesMax),
      reader: new ReadAhead(
        () => mounted.volume,
        (offsetBytes, lengthBytes) => mounted.writer.settle(offsetBytes, lengthBytes),
      ),
    };
    state.volumes.set(spec, mounted);
    return mounted;
  });
  state.pendingMounts.set(spec, pending);
  try {
    return await pending;
  } finally {
    state.pendingMounts.delete(spec);
  }
}

async function unmountVolume(state: MountState, spec: string): Promise<void> {
  const mounted = state.volumes.get(spec);
  if (mounted === undefined) throw sdError('NO_VDI', `${spec} is not mounted`);
  state.volumes.delete(spec);
  mounted.detached = true;
  if (mounted.openHandles === 0) await closeMounted(state, mounted);
}

/** Lands queued writes (a failure nobody can be told about any more is logged), then closes. */
async function closeMounted(state: MountState, mounted: MountedVolume): Promise<void> {
  await mounted.writer.drain().catch((error: unknown) => {
    state.logger.error({ err: error, spec: mounted.spec }, 'a queued write failed after close');
  });
  await mounted.volume.close();
}

/**
 * A Volume caches the VDI's object table, and other clients (`dog vdi write`, `dog vdi snapshot`)
 * change it behind our back. On the first open of a working volume that nobody holds open, sheepfs
 * opens it afresh, so `cat volume/X` after a `dog vdi write` or a snapshot taken elsewhere sees
 * the cluster as it is. While the file is held open, one writer at a time is assumed, as in
 * Sheepdog. Snapshots never change: they are not refreshed.
 */
async function refreshIfIdle(state: MountState, mounted: MountedVolume): Promise<void> {
  if (mounted.volume.info.readOnly) return;
  if (mounted.refreshing === undefined) {
    if (mounted.openHandles > 0) return;
    mounted.refreshing = (async () => {
      const fresh = await state.backend.openVolume(mounted.spec);
      await mounted.writer.settle(0, Number.MAX_SAFE_INTEGER);
      const stale = mounted.volume;
      mounted.volume = fresh;
      mounted.reader.invalidate();
      await stale.close();
    })().finally(() => {
      mounted.refreshing = undefined;
    });
  }
  await mounted.refreshing;
}

/**
 * After a snapshot or a rollback the working VDI is a new object in the cluster: reopen what is
 * mounted, or later writes would land in the snapshot.
 */
async function reopenVolume(state: MountState, name: string): Promise<void> {
  const mounted = state.volumes.get(name);
  if (mounted === undefined) return;
  const fresh = await state.backend.openVolume(name);
  await mounted.writer.settle(0, Number.MAX_SAFE_INTEGER);
  const stale = mounted.volume;
  mounted.volume = fresh;
  mounted.reader.invalidate();
  await stale.close();
}

// ---- wiring to fuse-native ----

interface OpContext {
  state: MountState;
}

/** Runs one op and answers the kernel exactly once, mapping any failure through errno.ts. */
function answer<T>(
  context: OpContext,
  op: string,
  callback: FuseCallback,
  run: () => Promise<T> | T,
  reply: (value: T) => void,
): void {
  let result: Promise<T>;
  try {
    result = Promise.resolve(run());
  } catch (error) {
    result = Promise.reject(error);
  }
  result.then(reply, (error: unknown) => {
    const verdict = fuseErrnoOf(error);
    if (verdict.shouldLog)
      context.state.logger.error({ op, err: error }, `${op} failed: ${verdict.name}`);
    else
      context.state.logger.debug(
        { op, err: error instanceof Error ? error.message : String(error) },
        `${op}: ${verdict.name}`,
      );
    callback(verdict.fuseErrno);
  });
}

/** An op sheepfs never allows (create, rename...): answered at once with a fixed errno. */
function refusing(context: OpContext, op: string, errnoName: keyof typeof errno, why: string) {
  return (...args: unknown[]): void => {
    const callback = args[args.length - 1] as FuseCallback;
    context.state.logger.debug({ op, path: args[0] }, `${op}: ${errnoName}: ${why}`);
    callback(-errno[errnoName]);
  };
}

function makeOps(context: OpContext): object {
  const { state } = context;
  return {
    getattr: (p: string, cb: FuseCallback) =>
      answer(
        context,
        'getattr',
        cb,
        () => getattr(state, parsePath(p)),
        (stat) => cb(0, stat),
      ),
    readdir: (p: string, cb: FuseCallback) =>
      answer(
        context,
        'readdir',
        cb,
        () => readdir(state, parsePath(p)),
        (names) => cb(0, names),
      ),
    open: (p: string, flags: number, cb: FuseCallback) =>
      answer(
        context,
        'open',
        cb,
        () => open(state, parsePath(p), flags),
        (fd) => cb(0, fd),
      ),
    release: (_p: string, fd: number, cb: FuseCallback) =>
      answer(
        context,
        'release',
        cb,
        () => state.releaseHandle(fd),
        () => cb(0),
      ),
    read: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCallback) =>
      answer(
        context,
        'read',
        cb,
        () => read(state, fd, buf, len, pos),
        (bytes) => cb(bytes),
      ),
    write: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCallback) =>
      answer(
        context,
        'write',
        cb,
        () => write(state, fd, buf, len, pos),
        (bytes) => cb(bytes),
      ),
    flush: (_p: string, fd: number, cb: FuseCallback) =>
      answer(
        context,
        'flush',
        cb,
        () => flush(state, fd),
        () => cb(0),
      ),
    fsync: (_p: string, _datasync: number, fd: number, cb: FuseCallback) =>
      answer(
        context,
        'fsync',
        cb,
        () => flush(state, fd),
        () => cb(0),
      ),
    truncate: (p: string, size: number, cb: FuseCallback) =>
      answer(
        context,
        'truncate',
        cb,
        () => truncate(state, parsePath(p), size),
        () => cb(0),
      ),
    ftruncate: (p: string, _fd: number, size: number, cb: FuseCallback) =>
      answer(
        context,
        'ftruncate',
        cb,
        () => truncate(state, parsePath(p), size),
        () => cb(0),
      ),
    utimens: (p: string, _atime: number, _mtime: number, cb: FuseCallback) =>
      answer(
        context,
        'utimens',
        cb,
        () => getattr(state, parsePath(p)),
        () => cb(0),
      ), // `touch` works, times stay
    statfs: (_p: string, cb: FuseCallback) => cb(0, { bsize: 4096, frsize: 4096, namemax: 255 }),
    create: refusing(
      context,
      'create',
      'EACCES',
      'files appear only by writing a name to vdi/mount',
    ),
    mknod: refusing(context, 'mknod', 'EACCES', 'files appear only by writing a name to vdi/mount'),
    mkdir: refusing(context, 'mkdir', 'EACCES', 'the tree is fixed'),
    rmdir: refusing(context, 'rmdir', 'EACCES', 'the tree is fixed'),
    unlink: refusing(
      context,
      'unlink',
      'EPERM',
      'unmount a volume by writing its name to vdi/unmount',
    ),
    rename: refusing(context, 'rename', 'EPERM', 'the tree is fixed'),
    link: refusing(context, 'link', 'EPERM', 'the tree is fixed'),
    symlink: refusing(context, 'symlink', 'EPERM', 'the tree is fixed'),
    chmod: refusing(context, 'chmod', 'EPERM', 'modes are fixed'),
    chown: refusing(context, 'chown', 'EPERM', 'owners are fixed'),
  };
}

// ---- mountpoint checks ----

/** Paths mounted right now, from /proc/self/mountinfo (field 5, octal-escaped). */
export function mountedPaths(): Set<string> {
  const paths = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined)
      paths.add(
        field.replace(/\\([0-7]{3})/g, (_m, octal: string) =>
          String.fromCharCode(parseInt(octal, 8)),
        ),
      );
  }
  return paths;
}

/** `fusermount -u -z`: detaches even a mount whose server is gone. Run as a child process. */
function lazyUnmount(mountpoint: string): boolean {
  return (
    spawnSync('fusermount', ['-u', '-z', mountpoint], { timeout: 10_000, stdio: 'ignore' })
      .status === 0
  );
}

/**
 * Refuses a mountpoint that is missing, not a directory or already a mountpoint, and lazily
 * unmounts a stale FUSE mount (its server died: stat fails with ENOTCONN). Returns notices.
 */
export function prepareMountpoint(mountpoint: string): string[] {
  const notices: string[] = [];
  try {
    statSync(mountpoint);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw sdError('INVALID_ARGUMENT', `mountpoint ${mountpoint} does not exist`);
    if (code !== 'ENOTCONN')
      throw sdError(
        'INVALID_ARGUMENT',
        `cannot use mountpoint ${mountpoint}: ${code ?? String(error)}`,
      );
    if (!lazyUnmount(mountpoint))
      throw sdError(
        'BUSY',
        `mountpoint ${mountpoint} is a stale mount and fusermount -u -z failed`,
      );
    notices.push(`cleaned a stale mount at ${mountpoint}`);
  }
  if (!statSync(mountpoint).isDirectory())
    throw sdError('INVALID_ARGUMENT', `mountpoint ${mountpoint} is not a directory`);
  if (mountedPaths().has(mountpoint))
    throw sdError('BUSY', `mountpoint ${mountpoint} is busy (already mounted)`);
  return notices;
}

// ---- public API ----

export interface MountSheepfsOptions {
  mountpoint: string;
  backend: SheepfsBackend;
  /** Extra libfuse -o options, appended after ours so they win (e.g. allow_other). */
  fuseOptions?: string[];
  logger?: Logger;
}

export interface SheepfsMount {
  readonly mountpoint: string;
  /** Unmounts (lazily, like fusermount -uz) and closes every volume. Idempotent. */
  unmount(): Promise<void>;
  /** Resolves when the mount is gone: after unmount(), or `umount`/`fusermount -u` from outside. */
  readonly gone: Promise<'unmounted' | 'external'>;
}

function withExtraOptions(fuse: FuseInstance, extra: readonly string[]): void {
  const ownOptions = fuse._fuseOptions.bind(fuse);
  fuse._fuseOptions = () => {
    const own = ownOptions();
    const joined = extra.join(',');
    return own === '' ? `-o${joined}` : `${own},${joined}`;
  };
}

function checkFuseOptions(options: readonly string[]): void {
  for (const option of options) {
    if (!/^[A-Za-z0-9_]+(=[^,\s]*)?$/.test(option))
      throw sdError('INVALID_ARGUMENT', `bad FUSE option '${option}'`);
  }
  const totalBytes = Buffer.byteLength([...throughputFuseOptions, ...options].join(','));
  if (totalBytes > fuseOptionsBytesMax) throw sdError('INVALID_ARGUMENT', 'FUSE options too long');
}

function fuseCall(run: (callback: (error: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => run((error) => (error ? reject(error) : resolve())));
}

export async function mountSheepfs(options: MountSheepfsOptions): Promise<SheepfsMount> {
  const mountpoint = path.resolve(options.mountpoint);
  const logger = options.logger ?? pino({ level: 'silent' });
  const userOptions = options.fuseOptions ?? [];
  checkFuseOptions(userOptions);
  for (const notice of prepareMountpoint(mountpoint)) logger.warn(notice);
  const state = new MountState(
    options.backend,
    logger,
    Date.now(),
    process.getuid?.() ?? 0,
    process.getgid?.() ?? 0,
  );
  const Fuse = loadFuse();
  // No fuse-native timeout on read/write: answering early would hand the kernel's buffer back
  // while the volume may still copy from or into it. The Volume's own rpc timeouts bound them.
  const timeout = { default: fuseOpTimeoutMs, read: false, write: false };
  const fuse = new Fuse(mountpoint, makeOps({ state }), {
    timeout,
    fsname: 'sheepfs',
    subtype: 'sheepfs',
  });
  withExtraOptions(fuse, [...throughputFuseOptions, ...userOptions]);
  try {
    await fuseCall((callback) => fuse.mount(callback));
  } catch (error) {
    // libfuse mounts before it parses its own options: a bad -o leaves a dead mount behind.
    if (mountedPaths().has(mountpoint)) lazyUnmount(mountpoint);
    const reason = error instanceof Error ? error.message : String(error);
    const hint = userOptions.length > 0 ? ' (check the -o options)' : '';
    throw sdError('IO', `cannot mount ${mountpoint}: ${reason}${hint}`);
  }
  logger.info({ mountpoint, options: fuse._fuseOptions() }, 'mounted');
  return watchMount(fuse, state, mountpoint);
}

function watchMount(fuse: FuseInstance, state: MountState, mountpoint: string): SheepfsMount {
  let settle: (how: 'unmounted' | 'external') => void = () => {};
  const gone = new Promise<'unmounted' | 'external'>((resolve) => (settle = resolve));
  let unmounting: Promise<void> | undefined;
  const closeVolumes = async (): Promise<void> => {
    const volumes = [...state.volumes.values()];
    state.volumes.clear();
    await Promise.allSettled(volumes.map((mounted) => closeMounted(state, mounted)));
  };
  // fuse-native does not tell us when someone else unmounts: poll the mount table (never the
  // mount itself — a FUSE server touching its own mount can deadlock).
  const poll = setInterval(() => {
    if (unmounting !== undefined || mountedPaths().has(mountpoint)) return;
    clearInterval(poll);
    state.logger.info({ mountpoint }, 'unmounted from outside');
    unmounting = closeVolumes().then(() => settle('external'));
  }, mountPollIntervalMs);
  const unmount = (): Promise<void> => {
    unmounting ??= (async () => {
      clearInterval(poll);
      await fuseCall((callback) => fuse.unmount(callback)).catch((error: unknown) => {
        state.logger.warn({ err: error }, 'unmount failed');
        throw sdError('BUSY', `cannot unmount ${mountpoint}`);
      });
      await closeVolumes();
      state.logger.info({ mountpoint }, 'unmounted');
      settle('unmounted');
    })();
    return unmounting;
  };
  return { mountpoint, unmount, gone };
}
