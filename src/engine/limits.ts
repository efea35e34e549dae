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
/** Requests one client keeps in flight on one connection. */
export const rpcInflightRequestsMax = 256;
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
  if (openFiles === undefined) return rpcServerConnectionsMax;
  return Math.max(rpcConnectionsMin, Math.min(rpcServerConnectionsMax, Math.floor((openFiles - descriptorsReservedMin) / 2)));
}
/** A refused connection is kept this long for its refusal to reach the client, then closed. */
export const refusedLingerMs = 1000;
/** Refused connections lingering at once; past this a connection is closed without a word. */
export const refusedLingeringMax = 32;
export const rpcConnectTimeoutMs = 3000;
export const rpcRequestTimeoutMs = 60_000;

// The sheep port, per server (see rpc/server.ts). Memory held for a connection is counted from
// the moment a frame's header is in until its reply has left: the request's payload, and the
// reply it asks for (a read's length). A connection over its share, or a server over its budget,
// is not read until some is given back; one request alone always fits (no deadlock on a large
// object). Client ops and peer ops have budgets of their own, so a client's write that waits on
// a peer never holds the memory that peer's requests to us need.
/** Connections at once; past this a new one gets one BUSY frame and is closed. */
export const rpcServerConnectionsMax = 1024;
/** Requests of one connection handled at once; the next frames wait in the socket. */
export const rpcServerInflightRequestsMax = 64;
/** Bytes held for one connection: requests being handled and replies not yet sent. */
export const rpcConnectionHeldBytesMax = 32 * 1024 * 1024;
/** Bytes held for all connections of one server, for client ops and again for peer ops. */
export const rpcServerHeldBytesMax = 64 * 1024 * 1024;
/** A frame, once its first byte is in, must be complete within this (our own pauses excluded). */
export const rpcFrameReadTimeoutMs = 15_000;
/** A client that takes nothing of a pending reply for this long is disconnected. */
export const rpcReplyWriteTimeoutMs = 30_000;
/** A connection with nothing in flight and nothing received for this long is closed. */
export const rpcServerIdleTimeoutMs = 120_000;
/** The server gives freed memory back after a busy spell at most this often. */
export const rpcDrainedCallIntervalMs = 10_000;
/** A client closes its own idle connection first, so it never sends into one the server closes. */
export const rpcClientIdleTimeoutMs = 60_000;
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
/**
 * After an epoch change, a replica write waits at most this long for the epoch's suspects to be
 * known (recovery.ts): until then a copy it changed may still be replaced by another replica's.
 */
export const suspectsKnownWaitMs = reconcileWaitMs + 5000;
/** Replica writes waiting for that at once; past it a write is refused as busy. */
export const suspectsKnownWaitersMax = 4096;
/** Copies a failed write left behind, tracked one by one; past it every local copy counts. */
export const behindObjectsMax = 65_536;
/** A behind copy tries to catch up after this, then backs off to the longest wait. */
export const catchUpFirstMs = 1000;
export const catchUpLongestMs = 30_000;
/** A reclaim that could not reach every member is tried again after this, backing off. */
export const reclaimRetryFirstMs = 1000;
export const reclaimRetryLongestMs = 60_000;
/** How long a member may take to store a VDI registry change before the change is reported not durable. */
export const registryDurableWaitMs = 10_000;

/** An I/O request from a client (dog, sheepfs, NBD) is cut into pieces of at most this. */
export const ioRequestBytesMax = 32 * 1024 * 1024;

/** A peer request from a sheep on a newer epoch is held this long for ours to catch up. */
export const epochHoldMs = 3000;
/** Client I/O on a sheep cut off from ZooKeeper waits this long for it, then is refused. */
export const coordinatorWaitMs = 10_000;
/** A sender told that its epoch is old waits this long for its own group to reach the new one. */
export const epochCatchUpMs = 5000;

/**
 * Recovery throttle bounds (`dog node recovery set-throttle`): the original's u32 of objects; its
 * interval was unbounded, here it ends where a timer can still wait (about 24.8 days).
 */
export const throttleMaxObjectsLimit = 2 ** 32 - 1;
export const throttleIntervalMsLimit = 2 ** 31 - 1;

/**
 * Malformed requests are logged through a token bucket per server: this many at once, then one
 * per interval (the ones held back are counted into the next line).
 */
export const malformedLogBurst = 5;
/** The cluster key: random bytes made at format (src/rpc/auth.ts). */
export const clusterKeyBytes = 32;
/** Each side's challenge in the connection handshake. */
export const authNonceBytes = 32;
/** A connection must prove the key within this, or it is closed. */
export const authHandshakeMs = 10_000;
/** Bytes a client may send before it has proved the key: the handshake is a few hundred. */
export const authHandshakeBytesMax = 4096;
/** A key file is one line of base64; anything longer is not a key file. */
export const keyFileBytesMax = 256;

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
assert.ok(suspectsKnownWaitMs < rpcRequestTimeoutMs, 'a held replica write must answer before its sender gives up');
assert.ok(rpcClientIdleTimeoutMs < rpcServerIdleTimeoutMs, 'the client must close an idle connection first');
assert.ok(rpcConnectionHeldBytesMax <= rpcServerHeldBytesMax);
assert.ok(rpcReplyWriteTimeoutMs <= rpcRequestTimeoutMs && rpcFrameReadTimeoutMs <= rpcRequestTimeoutMs);

// ---- multi-disk sheep (src/engine/md-ring.ts, src/store/md-store.ts) ----------------------
/** Disks one sheep spreads its objects over (the original's MD_MAX_DISK). */
export const mdDisksMax = 64;
/** A disk path, and the comma-separated list `dog node md plug|unplug` sends. */
export const mdPathBytesMax = 4096;
export const mdPathListBytesMax = 16 * 1024;
/** One vdisk per this many bytes of a disk (the original: 16 MiB; see docs/multi-disk.md). */
export const mdVdiskBytes = 64 * 1024 * 1024;
/** A disk's vdisks are capped here (16 TiB of disk at 64 MiB): the ring stays a few MiB. */
export const mdVdisksPerDiskMax = 262_144;
assert.ok(mdPathBytesMax <= mdPathListBytesMax);
