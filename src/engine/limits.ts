// Every limit of the system in one place (TigerBeetle style). Relations between them are asserted
// when this module loads, so a bad edit fails at start-up, not in production.
import assert from 'node:assert/strict';

export const blockSizeShiftDefault = 22; // 4 MiB objects
export const blockSizeShiftMin = 20; // 1 MiB
export const blockSizeShiftMax = 26; // 64 MiB
export const objectSizeBytesMax = 2 ** blockSizeShiftMax;

/** Owner-table entries per table object (and the object count of a normal VDI). */
export const tableEntriesPerChunk = 2 ** 20;
/**
 * Owner-table chunks (4 MiB each) an open VDI keeps in memory: 64 MiB. A normal VDI has one chunk;
 * a hyper VDI up to 4096, of which the least recently used are evicted.
 */
export const ownerTableCachedChunksMax = 16;
export const normalObjectsMax = 2 ** 20; // 4 TiB with 4 MiB objects
export const hyperObjectsMax = 2 ** 32; // 16 PiB with 4 MiB objects
/** Byte offsets are JS numbers: past this they lose precision and are refused. */
export const byteOffsetMax = Number.MAX_SAFE_INTEGER;

export const vdiNameBytesMax = 255;
export const snapshotTagBytesMax = 255;
export const vidCount = 2 ** 24;

export const copiesMax = 31;
export const vnodesMax = 65535;
export const vnodesDefault = 128;
export const zoneMax = 0xffffffff;

/** A node id is `addr:port`; an IPv6 address and a port fit well within this. */
export const nodeIdBytesMax = 64;
/** Epochs count membership changes; a u32 on the wire. */
export const epochMax = 2 ** 32 - 1;
/** A VDI's size: the largest hyper VDI of the largest objects. */
export const vdiSizeBytesMax = hyperObjectsMax * 2 ** blockSizeShiftMax;

export const portDefault = 7000;
export const nbdPortBase = 10809;

/** One rpc frame: header plus an object's payload plus slack. */
export const rpcHeaderBytesMax = 64 * 1024;
export const rpcFrameBytesMax = objectSizeBytesMax + rpcHeaderBytesMax;
export const rpcInflightRequestsMax = 256;
/** Connections (clients and peers) one sheep serves at once, at most. */
export const rpcConnectionsMax = 4096;
const rpcConnectionsMin = 16;
/** Descriptors a sheep keeps back from connections: logs, journal, the cluster log, libuv's own. */
export const descriptorsReservedMin = 64;
/**
 * The connection cap under an open-files limit of `openFiles`: half of what the reserve leaves,
 * so object files (read handles), peer and NBD connections have the other half. Past the cap a
 * client gets a one-line refusal; without one, a sheep out of descriptors once read its own
 * EMFILE as "every other member is dead".
 */
export function rpcConnectionsCap(openFiles: number | undefined): number {
  if (openFiles === undefined) return rpcConnectionsMax;
  return Math.max(rpcConnectionsMin, Math.min(rpcConnectionsMax, Math.floor((openFiles - descriptorsReservedMin) / 2)));
}
/** A refused connection is kept this long for its refusal to reach the client, then closed. */
export const refusedLingerMs = 1000;
/** Refused connections lingering at once; past this a connection is closed without a word. */
export const refusedLingeringMax = 32;
export const rpcConnectTimeoutMs = 3000;
export const rpcRequestTimeoutMs = 60_000;
/** A client's direct object call pending this long makes it ask whether the primary left. */
export const directStallCheckMs = 2000;
/**
 * How long after a replica write its outcome may still be open: the request's timeout, then the
 * gateway's wait for the next epoch before it retries. A gateway that dies within this window may
 * leave replicas that differ (recovery.ts reconciles them).
 */
export const suspectWriteWindowMs = rpcRequestTimeoutMs + 15_000;
/** Objects tracked per gateway within that window; past it every copy counts as a suspect. */
export const suspectWritesPerGatewayMax = 65_536;
/** How long recovery waits on a replica that still decides which copy of a suspect wins. */
export const reconcileWaitMs = 10_000;
/** How long a member may take to store a VDI registry change before the change is reported not durable. */
export const registryDurableWaitMs = 10_000;

/** An I/O request from a client (dog, sheepfs, NBD) is cut into pieces of at most this. */
export const ioRequestBytesMax = 32 * 1024 * 1024;

/** A peer request from a sheep on a newer epoch is held this long for ours to catch up. */
export const epochHoldMs = 3000;
/** A sender told that its epoch is old waits this long for its own group to reach the new one. */
export const epochCatchUpMs = 5000;

/** Recovery throttle bounds (`dog node recovery set-throttle`). */
export const throttleMaxObjectsLimit = 1000;
export const throttleIntervalMsLimit = 1000;

/** Malformed requests are logged at most this often per server (the rest are counted). */
export const malformedLogIntervalMs = 10_000;

/** The local driver reports a dead member as left within this. */
export const localLivenessPollMs = 250;
export const localLeaveDetectMsMax = 2000;
/** Every local-driver member bumps its heartbeat file this often, and reads the others'. */
export const localBeatIntervalMs = 100;
/** A heartbeat that stood still this long is a member that stopped answering (SIGSTOP, a hung loop). */
export const localBeatStaleMs = 1500;
/** A liveness check that cannot tell (EMFILE...) is logged at most this often per driver. */
export const localLivenessWarnIntervalMs = 10_000;

assert.ok(blockSizeShiftDefault >= blockSizeShiftMin && blockSizeShiftDefault <= blockSizeShiftMax);
assert.ok(rpcFrameBytesMax < 2 ** 31, 'frame length must fit the 32-bit prefix');
assert.ok(localLivenessPollMs * 4 <= localLeaveDetectMsMax);
// The last beat, our read of it, the stale wait, the check that sees it: all within the limit.
assert.ok(localBeatStaleMs + 3 * localBeatIntervalMs <= localLeaveDetectMsMax);
assert.ok(ownerTableCachedChunksMax >= 1 && ownerTableCachedChunksMax <= hyperObjectsMax / tableEntriesPerChunk);
assert.ok(hyperObjectsMax * 2 ** blockSizeShiftMin <= 2 ** 54);

assert.ok(registryDurableWaitMs < rpcRequestTimeoutMs);
