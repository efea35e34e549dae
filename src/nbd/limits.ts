// Limits of the NBD front end. They live here rather than in src/engine/limits.ts only because this
// directory is owned separately; relations to the engine limits are asserted at load like there.
import assert from 'node:assert/strict';
import { ioRequestBytesMax } from '../engine/limits.js';

/** An option's data beyond this is treated as abuse and the connection is closed. */
export const nbdOptionBytesMax = 64 * 1024;
/** Options one connection may send before it must choose an export. */
export const nbdOptionsPerConnectionMax = 1024;
/** A PSK file or PEM file larger than this is refused at start: it is not what was meant. */
export const nbdTlsFileBytesMax = 1024 * 1024;
/** OpenSSL's PSK_MAX_PSK_LEN: a longer key could never be used. */
export const nbdTlsPskBytesMax = 512;
/** Strings (export names, queries, messages) are at most this long per the spec. */
export const nbdStringBytesMax = 4096;
/** Error messages we send are cut to this, a line for a human rather than a dump. */
export const nbdErrorMessageBytesMax = 512;

/** Advertised with NBD_INFO_BLOCK_SIZE: any byte offset works, 4 KiB avoids partial pages. */
export const nbdBlockSizeMinBytes = 1;
export const nbdBlockSizePreferredBytes = 4096;
/** READ, WRITE and CACHE lengths above this are refused (and an oversized WRITE disconnects). */
export const nbdBlockSizeMaxBytes = ioRequestBytesMax;
/** TRIM and WRITE_ZEROES carry no payload and may cover more; they are cut into pieces of this. */
export const nbdZeroPieceBytesMax = ioRequestBytesMax;
/** Size of the shared zero buffer used for WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE. */
export const nbdZeroBufferBytes = 4 * 1024 * 1024;

/** Requests of one connection being handled at once; the next header waits for a free slot. */
export const nbdInflightRequestsMax = 64;
/** READ/WRITE bytes of one connection in flight at once (payloads held in memory). */
export const nbdInflightBytesMax = 128 * 1024 * 1024;
/** The socket is paused once this much unread input is buffered and no read needs more. */
export const nbdReceiveBufferedBytesMax = 1024 * 1024;
/** Descriptors in one NBD_REPLY_TYPE_BLOCK_STATUS chunk; the spec lets us return fewer. */
export const nbdBlockStatusDescriptorsMax = 16 * 1024;
/**
 * Sessions one server serves at once. Past it a client still gets a handshake, whose export
 * request is refused with a message naming the limit (NBD_REP_ERR_POLICY); past that many more
 * handshakes again, the listener drops new connections at once.
 */
export const nbdConnectionsMax = 1024;
export const nbdRefusingHandshakesMax = 64;
/** The whole handshake, from accept to transmission, must fit in this (absolute, not idle). */
export const nbdHandshakeTimeoutMs = 10_000;
/** A request, once its first byte is in, must be complete (header and payload) within this. */
export const nbdRequestReadTimeoutMs = 30_000;
/**
 * A session with no traffic either way for this long is closed; 0 (the default) never closes
 * one: a VM may leave its disk untouched for days. `sheep --nbd-idle-timeout SEC` sets it.
 */
export const nbdIdleTimeoutMsDefault = 0;
/** How often a session's deadlines are checked. */
export const nbdWatchdogPeriodMs = 1000;

assert.ok(nbdInflightBytesMax >= nbdBlockSizeMaxBytes, 'one maximal request must always fit');
assert.ok(nbdBlockSizeMaxBytes <= 0xffffffff - 8, 'a READ reply must fit one OFFSET_DATA chunk');
assert.ok(nbdBlockSizeMaxBytes % nbdBlockSizeMinBytes === 0);
assert.ok(nbdBlockSizePreferredBytes <= nbdBlockSizeMaxBytes);
assert.ok(
  nbdZeroBufferBytes <= nbdZeroPieceBytesMax && nbdZeroPieceBytesMax % nbdZeroBufferBytes === 0,
);
assert.ok(nbdOptionBytesMax >= 4 + nbdStringBytesMax + 2 + 2 * 4, 'a maximal NBD_OPT_GO must fit');
assert.ok(nbdErrorMessageBytesMax <= nbdStringBytesMax);
