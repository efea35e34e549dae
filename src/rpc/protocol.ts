// Every request a sheep serves, declared once: dog, sheepfs and the NBD layer to sheep, and sheep
// to sheep (the `peer.*` ops, which carry the sender's epoch and node id). Each op names its
// fields with their bounds and its result type; client and server compile against this table, so
// renaming an op or a field is a compile error on both ends. `decodeRequest` checks a header
// against it before any handler runs.
import type { NodeInfo } from '../cluster/driver.js';
import {
  blockSizeShiftMax,
  blockSizeShiftMin,
  copiesMax,
  epochMax,
  mdPathListBytesMax,
  nodeIdBytesMax,
  objectSizeBytesMax,
  snapshotTagBytesMax,
  throttleIntervalMsLimit,
  throttleMaxObjectsLimit,
  vdiNameBytesMax,
  vnodesMax,
  vdiSizeBytesMax,
} from '../engine/limits.js';
import type { VdiEntry } from '../engine/vdi.js';
import { attrKeyBytesMax } from '../engine/vdi-attrs.js';
import { lockClientBytesMax, lockHolderBytesMax, type VdiLock } from '../engine/vdi-locks.js';
import { sumsSentBytesMax } from '../store/block-sums.js';
import type { ClusterConfig, EpochRecord } from '../store/meta.js';
import type { MdDiskData } from '../store/md-store.js';
import type { RequestStatsData } from '../sheep/stats.js';
import {
  bool,
  oneOf,
  int,
  optionalBytes,
  oid,
  optionalInt,
  optionalString,
  size,
  string,
  type Fields,
  type Received,
  type Sent,
} from './schema.js';

// ---- result data ---------------------------------------------------------------------------

export type ClusterStatus = 'unformatted' | 'running' | 'waiting' | 'shutdown';

export interface ClusterInfoData {
  status: ClusterStatus;
  recoveryEnabled: boolean;
  config: ClusterConfig | null;
  epochs: EpochRecord[]; // newest first
}

export interface VdiUsageData {
  entry: VdiEntry;
  usedBytes: number;
  sharedBytes: number;
}

export interface DiskUsageData {
  usedBytes: number;
  availableBytes: number;
}

export interface NodeStatData extends DiskUsageData {
  node: NodeInfo;
}

export interface RecoveryState {
  epoch: number;
  running: boolean;
  total: number;
  done: number;
  /** Object bytes this node received from others for the current epoch. */
  receivedBytes: number;
  /** Objects whose local copy was found current and not copied. */
  keptObjects: number;
}

/** One node's disks (`dog node md info`). */
export interface MdNodeData {
  node: NodeInfo;
  disks: MdDiskData[];
}
export type { MdDiskData };

/** Whether a node has stored a registry version: the answer to `peer.registry-durable`. */
export interface RegistryDurabilityData {
  durable: boolean;
  /** The newest registry version on this node's disk. */
  durableVersion: number;
  /** Why the newest write failed, while it keeps failing. */
  fault?: string;
}

/** A replica's answer while the copies of a suspect object are made to agree. */
export type ReconcileAnswer =
  | { state: 'verified'; sum: string } // this copy is current: take it
  | { state: 'pending' } // this node may yet decide its copy wins: ask again
  | { state: 'none' }; // no copy that counts here: ask the next replica

export interface ThrottleData {
  maxObjects: number;
  intervalMs: number;
}

/** One replica's copy as `object.check` found it (dog vdi check); `busy`: under recovery there, left to it. */
export type CopyState = 'ok' | 'missing' | 'damaged' | 'differs' | 'busy';

/** What `object.check` found of an object's copies and what it repaired (src/sheep/object-check.ts). */
export interface ObjectCheckData {
  copies: Array<{ node: string; state: CopyState; fixed: boolean }>;
  /** fine, repaired, no copy anywhere, none that passes its checksums, passing copies that disagree, or copies under recovery only. */
  outcome: 'fine' | 'repaired' | 'none' | 'all-damaged' | 'no-majority' | 'busy';
  /** The source was the only copy that passed its checksums: no majority was needed. */
  onlyVerified: boolean;
}

/** Scrubbing on one node (src/sheep/scrub.ts). */
export interface ScrubState {
  running: boolean;
  /** Objects checked in the current pass, of `total`. */
  done: number;
  total: number;
  passes: number;
  damaged: number;
  repaired: number;
}

export interface LocationData {
  oid: string;
  copies: number;
  nodeCount: number;
  placement: string[];
  holders: string[];
}

// ---- the table -----------------------------------------------------------------------------

/** Where an op's bulk data travels: nowhere, as the request's payload, or as the reply's. */
/** `valueAndData`: a small answer in the header and bulk data beside it (`{ value, data }`). */
export type PayloadKind = 'none' | 'request' | 'reply' | 'valueAndData';

export interface OpSpec<F extends Fields = Fields, R = unknown, P extends PayloadKind = PayloadKind> {
  readonly fields: F;
  readonly payload: P;
  /** Type only: what the op answers (for `reply` ops, the payload itself). */
  readonly result?: R;
}

/** An op answering `R` in the reply header. */
const answers =
  <R>() =>
  <const F extends Fields>(fields: F): OpSpec<F, R, 'none'> => ({ fields, payload: 'none' });
/** An op whose request carries object data of at most `objectSizeBytesMax`. */
const takesData =
  <R>() =>
  <const F extends Fields>(fields: F): OpSpec<F, R, 'request'> => ({ fields, payload: 'request' });
/** An op whose answer is bulk data, sent as the reply's payload. */
const answersData = <const F extends Fields>(fields: F): OpSpec<F, Buffer, 'reply'> => ({ fields, payload: 'reply' });
/** An op answering a small value and bulk data. */
const answersValueAndData =
  <V>() =>
  <const F extends Fields>(fields: F): OpSpec<F, ValueAndData<V>, 'valueAndData'> => ({ fields, payload: 'valueAndData' });

export interface ValueAndData<V> {
  value: V;
  data: Buffer;
}

const name = string(vdiNameBytesMax * 4);
const snapshot = optionalString(snapshotTagBytesMax);
const vdiCopies = optionalInt(0, 1000);
const offset = int(0, objectSizeBytesMax);
const length = int(1, objectSizeBytesMax);
/** What every sheep-to-sheep request carries, for epoch fencing. */
const peer = { epoch: int(0, epochMax), from: string(nodeIdBytesMax) } as const;

export const protocol = {
  ping: answers<'pong'>()({}),

  'cluster.info': answers<ClusterInfoData>()({}),
  /** `reformat`: the cluster may be formatted already; its data is removed (format-service.ts). */
  'cluster.format': answers<null>()({
    copies: int(1, copiesMax),
    blockSizeShift: optionalInt(blockSizeShiftMin, blockSizeShiftMax),
    reformat: bool,
    /** -V: vnodes an admin sets per node (`node.vnodes`), not only each sheep's own. */
    fixedVnodes: bool,
    /** -c D:P (ec-layout.ts) and -t. */
    copyPolicy: optionalInt(0, 255),
    strict: bool,
    /** -R: VIDs of deleted VDIs are used again (vdi-recycle.ts). */
    recycleVids: bool,
  }),
  'cluster.shutdown': answers<null>()({}),
  'cluster.recover': answers<null>()({ action: oneOf(['force', 'enable', 'disable']) }),

  'node.list': answers<NodeInfo[]>()({}),
  'node.info': answers<{ nodes: NodeStatData[]; virtualBytes: number }>()({}),
  'node.kill': answers<null>()({ node: string(nodeIdBytesMax) }),
  /** The receiving node's vnodes (a cluster formatted with fixedVnodes). */
  'node.vnodes': answers<null>()({ vnodes: int(1, vnodesMax) }),
  'node.recovery': answers<Array<{ node: NodeInfo; state: RecoveryState | null }>>()({}),
  /** `0 0` lifts the throttle, as in the original. */
  'recovery.throttle': answers<null>()({ max: int(0, throttleMaxObjectsLimit), interval: int(0, throttleIntervalMsLimit) }),
  'recovery.get-throttle': answers<ThrottleData>()({}),
  /** This node's request counters (sheep/stats.ts). */
  'node.stat': answers<RequestStatsData>()({}),
  /** This node's log level (the original's numbers, sheep/log-level.ts): set when given; answers it. */
  'node.log-level': answers<number>()({ level: optionalInt(0, 7) }),
  'cluster.reweight': answers<null>()({}),
  /** The disks of the node asked, or (`all`) of every member. */
  'node.md-info': answers<MdNodeData[]>()({ all: bool }),
  /** Comma-separated absolute directories, added to or taken from the node asked (md-store.ts). */
  'node.md-plug': answers<null>()({ disks: string(mdPathListBytesMax) }),
  'node.md-unplug': answers<null>()({ disks: string(mdPathListBytesMax) }),

  'vdi.create': answers<VdiEntry>()({ name, size: size(vdiSizeBytesMax), copies: vdiCopies, copyPolicy: optionalInt(0, 255), hyper: bool }),
  'vdi.snapshot': answers<VdiEntry>()({ name, tag: optionalString(snapshotTagBytesMax * 4) }),
  'vdi.clone': answers<VdiEntry>()({ source: name, snapshot, target: name, copies: vdiCopies }),
  'vdi.delete': answers<null>()({ name, snapshot }),
  'vdi.rollback': answers<VdiEntry>()({ name, snapshot }),
  'vdi.resize': answers<VdiEntry>()({ name, size: size(vdiSizeBytesMax) }),
  'vdi.lookup': answers<VdiEntry>()({ name, snapshot }),
  'vdi.list': answers<VdiUsageData[]>()({}),
  'vdi.all': answers<VdiEntry[]>()({}),
  'vdi.location': answers<LocationData>()({ oid }),
  /**
   * The payload is a byte 1 and the value, or the one byte 0 to delete (a request carries data,
   * and a value may be empty); `exclusive`: only if the key is new.
   */
  'vdi.setattr': takesData<null>()({ name, key: string(attrKeyBytesMax * 4), exclusive: bool }),
  'vdi.getattr': answersData({ name, key: string(attrKeyBytesMax * 4) }),
  /** Answers the copies the VDI (or the cluster) had before. */
  'vdi.alter-copy': answers<{ old: number }>()({ name, copies: int(1, copiesMax) }),
  'cluster.alter-copy': answers<{ old: number }>()({ copies: int(1, copiesMax) }),
  /**
   * A writer (sheepfs) locks the working VDI through this sheep; `release` with the answer's
   * holder. With `holder`: re-takes that lock, lost when every sheep restarted (lock-keeper.ts).
   */
  'vdi.lock': answers<VdiLock>()({ name, client: string(lockClientBytesMax), shared: bool, holder: optionalString(lockHolderBytesMax) }),
  'vdi.release': answers<null>()({ holder: string(lockHolderBytesMax) }),
  'vdi.unlock': answers<null>()({ name }),
  'vdi.locks': answers<VdiLock[]>()({}),
  /** Compares the copies of `oid` and repairs those that are missing, damaged or outvoted. */
  'object.check': answers<ObjectCheckData>()({ oid, existOnly: bool }),
  'scrub.state': answers<Array<{ node: NodeInfo; state: ScrubState | null }>>()({}),
  'scrub.throttle': answers<null>()({ max: int(1, throttleMaxObjectsLimit), interval: int(1, throttleIntervalMsLimit) }),
  'scrub.get-throttle': answers<ThrottleData>()({}),

  'gw.read': answersData({ oid, offset, length }),
  /** `lock`: the writer's lock holder; refused LOCK_LOST when the cluster no longer holds it. */
  'gw.write': takesData<null>()({ oid, offset, create: bool, lock: optionalString(lockHolderBytesMax) }),
  'gw.remove': answers<null>()({ oid, lock: optionalString(lockHolderBytesMax) }),

  /** `recovery`: recovery's own traffic, which does not count as client I/O. */
  'peer.read': answersData({ ...peer, oid, offset, length, force: bool, recovery: bool }),
  /** `verify`: read the copy again, checked against its block sums, not the sum remembered. */
  'peer.checksum': answers<string>()({ ...peer, oid, force: bool, recovery: bool, verify: bool }),
  /**
   * The receiver sizes the object from its own placement: a sender cannot choose it. `sums`: of
   * a whole object, its block sums as the gateway made them when the data came in (stored as
   * given: a copy that arrived damaged fails its first read); absent, the receiver makes them.
   * `cached`: acknowledged once in the receiver's OS cache, made durable by `peer.flush`;
   * absent, acknowledged once on its disk.
   */
  'peer.write': takesData<null>()({ ...peer, oid, offset, create: bool, recovery: bool, sums: optionalBytes(sumsSentBytesMax), cached: bool }),
  /** Syncs the receiver's cached writes to objects of VDI `vid` (docs/durability.md); answers how many. */
  'peer.flush': answers<number>()({ ...peer, vid: int(1, 0xffffff) }),
  'peer.remove': answers<boolean>()({ ...peer, oid }),
  'peer.exists': answers<boolean>()({ ...peer, oid }),
  /** Moves a strip a write staged over the strip, if the staged one is of `generation` (ec-gateway.ts). */
  'peer.ec-commit': answers<null>()({ ...peer, oid, generation: string(20) }),
  /** The payload is the object ids, 8 bytes each (oid-list.ts). */
  'peer.list': answersData({ ...peer, inodesOnly: bool }),
  'peer.recovery': answers<RecoveryState>()({ ...peer }),
  'peer.stat': answers<DiskUsageData>()({ ...peer }),
  'peer.md-info': answers<MdDiskData[]>()({ ...peer }),
  /** The objects gateways that left wrote recently, for the sender's epoch: 'all', or the data. */
  'peer.suspects': answersValueAndData<'all' | null>()({ ...peer, recovery: bool }),
  /** Whether the receiver's copy of `oid` is settled, under the sender's epoch. */
  'peer.reconcile': answers<ReconcileAnswer>()({ ...peer, oid, recovery: bool }),
  'peer.kill': answers<null>()({ ...peer }),
  /** Removes every object of the receiver's store (a reformat); answers how many. */
  'peer.wipe': answers<number>()({ ...peer }),
  /** The receiver rewrites its copy of `oid` from `source`'s (check and repair). */
  'peer.repair': answers<null>()({ ...peer, oid, source: string(nodeIdBytesMax) }),
  'peer.scrub': answers<ScrubState>()({ ...peer }),
  'peer.scrub-throttle': answers<null>()({ ...peer, max: int(1, throttleMaxObjectsLimit), interval: int(1, throttleIntervalMsLimit) }),
  /** Waits (bounded) until the receiver has stored VDI registry `version`. */
  'peer.registry-durable': answers<RegistryDurabilityData>()({ ...peer, version: int(0, Number.MAX_SAFE_INTEGER) }),
} as const satisfies Record<string, OpSpec>;

// ---- types derived from the table ----------------------------------------------------------

type Table = typeof protocol;
export type Op = keyof Table;
/** The sheep-to-sheep ops: epoch-fenced. */
export type PeerOp = Extract<Op, `peer.${string}`>;

/** What a sender writes: optional fields and booleans may be left out. */
export type RequestFields<K extends Op> = Sent<Table[K]['fields']>;
/** What a handler receives: every field checked, booleans and optionals filled in. */
export type Request<K extends Op> = { readonly op: K } & Received<Table[K]['fields']>;
export type ResultOf<K extends Op> = Table[K] extends OpSpec<Fields, infer R> ? R : never;
export type AnyRequest = { [K in Op]: Request<K> }[Op];

export type RequestPayloadOp = { [K in Op]: Table[K]['payload'] extends 'request' ? K : never }[Op];
/** The payload argument of a call: one Buffer for data-carrying ops, nothing for the others. */
export type PayloadArgs<K extends Op> = K extends RequestPayloadOp ? [payload: Buffer] : [];
export type RequestPayload<K extends Op> = K extends RequestPayloadOp ? Buffer : undefined;

/** Peer fields a caller leaves to the peer client, which stamps its own epoch and id. */
export type PeerRequestFields<K extends PeerOp> = Omit<RequestFields<K>, 'epoch' | 'from'>;

export function isOp(value: unknown): value is Op {
  return typeof value === 'string' && Object.hasOwn(protocol, value);
}

export function payloadKind(op: Op): PayloadKind {
  return protocol[op].payload;
}

export function isPeerOp(op: Op): op is PeerOp {
  return op.startsWith('peer.');
}

/**
 * The reply data a request asks for, before it is decoded: a read's `length` (the decoder bounds
 * it), else 0. The server counts it against its memory budget while the request is served.
 */
export function replyBytesAsked(header: Readonly<Record<string, unknown>>): number {
  const op = header['op'];
  if (!isOp(op) || protocol[op].payload !== 'reply' || !('length' in protocol[op].fields)) return 0;
  const length = header['length'];
  return typeof length === 'number' && Number.isSafeInteger(length) ? Math.min(Math.max(length, 0), objectSizeBytesMax) : 0;
}
