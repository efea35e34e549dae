// Transmission phase: read request headers, validate each against a table of commands, admit it
// (InflightLimiter), read its payload, and run it without waiting for earlier requests. Replies go
// out in completion order through FrameWriter. A write is only handed to the volume once its whole
// payload has arrived, so a client that disconnects mid-request never gets a partial write applied.
import { asSdError, SdError } from '../engine/errors.js';
import type { Extent, Volume } from '../engine/volume.js';
import * as c from './constants.js';
import { isClusterError, nbdErrnoFor } from './errors.js';
import type { NegotiatedExport } from './handshake.js';
import { InflightLimiter } from './inflight.js';
import {
  nbdBlockSizeMaxBytes,
  nbdBlockStatusDescriptorsMax,
  nbdInflightBytesMax,
  nbdInflightRequestsMax,
  nbdZeroPieceBytesMax,
} from './limits.js';
import type { NbdLogger } from './logger.js';
import type { StreamReader } from './reader.js';
import * as replies from './replies.js';
import type { FrameWriter } from './writer.js';

export interface TransmissionContext {
  reader: StreamReader;
  writer: FrameWriter;
  negotiated: NegotiatedExport;
  logger: NbdLogger;
  /** Shared read-only zeroes for WRITE_ZEROES with NO_HOLE. */
  zeroBuffer: Buffer;
}

export interface Request {
  flags: number;
  type: number;
  handle: bigint;
  /** Still a bigint: the wire allows 64 bits, we accept only safe integers after validation. */
  offset: bigint;
  lengthBytes: number;
}

/** Why transmission ended: the client said goodbye, or the connection is unusable. */
export type TransmissionEnd = 'disconnect' | 'closed';

type ReplyBody =
  | { kind: 'ok' }
  | { kind: 'data'; data: Buffer }
  | { kind: 'status'; descriptors: replies.StatusDescriptor[] };

interface Rejection {
  errno: c.NbdErrno;
  message: string;
}

interface Command {
  name: string;
  /** Flags valid besides FUA, which the spec makes valid on every command. */
  flags: number;
  hasPayload: boolean;
  writes: boolean;
  /** null: any 32-bit length (no payload either way, the work is cut into pieces). */
  lengthMaxBytes: number | null;
  checkBounds: boolean;
  outOfRangeErrno: c.NbdErrno;
  run: (
    volume: Volume,
    request: Request,
    offsetBytes: number,
    payload: Buffer | null,
    context: TransmissionContext,
  ) => Promise<ReplyBody>;
}

const ok: ReplyBody = { kind: 'ok' };

const commands: ReadonlyMap<number, Command> = new Map<number, Command>([
  [
    c.NBD_CMD_READ,
    {
      name: 'read',
      flags: c.NBD_CMD_FLAG_DF,
      hasPayload: false,
      writes: false,
      lengthMaxBytes: nbdBlockSizeMaxBytes,
      checkBounds: true,
      outOfRangeErrno: c.NBD_EINVAL,
      run: runRead,
    },
  ],
  [
    c.NBD_CMD_WRITE,
    {
      name: 'write',
      flags: 0,
      hasPayload: true,
      writes: true,
      lengthMaxBytes: nbdBlockSizeMaxBytes,
      checkBounds: true,
      outOfRangeErrno: c.NBD_ENOSPC,
      run: runWrite,
    },
  ],
  [
    c.NBD_CMD_FLUSH,
    {
      name: 'flush',
      flags: 0,
      hasPayload: false,
      writes: false,
      lengthMaxBytes: null,
      checkBounds: false,
      outOfRangeErrno: c.NBD_EINVAL,
      run: async (volume) => {
        await volume.flush();
        return ok;
      },
    },
  ],
  [
    c.NBD_CMD_TRIM,
    {
      name: 'trim',
      flags: 0,
      hasPayload: false,
      writes: true,
      lengthMaxBytes: null,
      checkBounds: true,
      outOfRangeErrno: c.NBD_EINVAL,
      run: runTrim,
    },
  ],
  [
    c.NBD_CMD_CACHE,
    {
      name: 'cache',
      flags: 0,
      hasPayload: false,
      writes: false,
      lengthMaxBytes: nbdBlockSizeMaxBytes,
      checkBounds: true,
      outOfRangeErrno: c.NBD_EINVAL,
      // No cache of our own to warm: the spec allows an advertised CACHE that does nothing.
      run: async () => ok,
    },
  ],
  [
    c.NBD_CMD_WRITE_ZEROES,
    {
      name: 'write_zeroes',
      flags: c.NBD_CMD_FLAG_NO_HOLE,
      hasPayload: false,
      writes: true,
      lengthMaxBytes: null,
      checkBounds: true,
      outOfRangeErrno: c.NBD_ENOSPC,
      run: runWriteZeroes,
    },
  ],
  [
    c.NBD_CMD_BLOCK_STATUS,
    {
      name: 'block_status',
      flags: c.NBD_CMD_FLAG_REQ_ONE,
      hasPayload: false,
      writes: false,
      lengthMaxBytes: null,
      checkBounds: true,
      outOfRangeErrno: c.NBD_EINVAL,
      run: runBlockStatus,
    },
  ],
]);

export function parseRequest(header: Buffer): Request {
  if (header.readUInt32BE(0) !== c.NBD_REQUEST_MAGIC) {
    throw new SdError('PROTOCOL', 'bad request magic');
  }
  return {
    flags: header.readUInt16BE(4),
    type: header.readUInt16BE(6),
    handle: header.readBigUInt64BE(8),
    offset: header.readBigUInt64BE(16),
    lengthBytes: header.readUInt32BE(24),
  };
}

/** Every check the spec names, in the order that picks the errno it prescribes. */
export function validateRequest(
  command: Command | undefined,
  request: Request,
  negotiated: NegotiatedExport,
): Rejection | null {
  if (!command) return { errno: c.NBD_EINVAL, message: `unknown command ${request.type}` };
  let allowedFlags = c.NBD_CMD_FLAG_FUA | command.flags;
  if (!negotiated.structuredReplies) allowedFlags &= ~c.NBD_CMD_FLAG_DF;
  if ((request.flags & ~allowedFlags) !== 0) {
    return {
      errno: c.NBD_EINVAL,
      message: `flags 0x${request.flags.toString(16)} not valid for ${command.name}`,
    };
  }
  if (request.type === c.NBD_CMD_BLOCK_STATUS) {
    if (negotiated.baseAllocationContextId === null) {
      return { errno: c.NBD_EINVAL, message: 'no metadata context was selected' };
    }
    if (request.lengthBytes === 0)
      return { errno: c.NBD_EINVAL, message: 'empty block status range' };
  }
  if (command.lengthMaxBytes !== null && request.lengthBytes > command.lengthMaxBytes) {
    return {
      errno: c.NBD_EINVAL,
      message: `length ${request.lengthBytes} is over ${command.lengthMaxBytes}`,
    };
  }
  const info = negotiated.lease.volume.info;
  if (command.writes && info.readOnly)
    return { errno: c.NBD_EPERM, message: `${info.name} is read-only` };
  if (
    command.checkBounds &&
    request.offset + BigInt(request.lengthBytes) > BigInt(info.sizeBytes)
  ) {
    return {
      errno: command.outOfRangeErrno,
      message: `range past the end (${info.sizeBytes} bytes)`,
    };
  }
  return null;
}

/** Runs until NBD_CMD_DISC, a protocol violation (throws) or the connection going away. */
export async function runTransmission(context: TransmissionContext): Promise<TransmissionEnd> {
  const limiter = new InflightLimiter(nbdInflightRequestsMax, nbdInflightBytesMax);
  try {
    return await receiveRequests(context, limiter);
  } finally {
    // Replies of admitted requests go out (or fail quietly) before the volume lease is released.
    await limiter.drain();
  }
}

async function receiveRequests(
  context: TransmissionContext,
  limiter: InflightLimiter,
): Promise<TransmissionEnd> {
  for (;;) {
    let header: Buffer;
    try {
      header = await context.reader.readExactly(c.REQUEST_HEADER_BYTES);
    } catch {
      return 'closed';
    }
    const request = parseRequest(header);
    if (request.type === c.NBD_CMD_DISC) return 'disconnect';
    const command = commands.get(request.type);
    const rejection = validateRequest(command, request, context.negotiated);
    if (rejection && command?.hasPayload && request.lengthBytes > nbdBlockSizeMaxBytes) {
      // The payload cannot be skipped safely; answer, then hang up (the spec allows it).
      await sendReply(context, request, rejection).catch(() => {});
      throw new SdError(
        'PROTOCOL',
        `write payload of ${request.lengthBytes} bytes is over the limit`,
      );
    }
    const costBytes = rejection ? 0 : payloadCostBytes(request);
    await limiter.acquire(costBytes);
    let payload: Buffer | null = null;
    try {
      payload = await readPayload(context, command, request, rejection !== null);
    } catch {
      limiter.release(costBytes);
      return 'closed';
    }
    void handleRequest(context, command, request, rejection, payload).finally(() =>
      limiter.release(costBytes),
    );
  }
}

function payloadCostBytes(request: Request): number {
  const carriesData = request.type === c.NBD_CMD_READ || request.type === c.NBD_CMD_WRITE;
  return carriesData ? request.lengthBytes : 0;
}

async function readPayload(
  context: TransmissionContext,
  command: Command | undefined,
  request: Request,
  rejected: boolean,
): Promise<Buffer | null> {
  if (!command?.hasPayload) return null;
  // The header is in: until the payload is, the request is half read (server.ts times it).
  context.reader.inMessage = true;
  try {
    if (rejected) {
      await context.reader.skip(request.lengthBytes);
      return null;
    }
    return await context.reader.readExactly(request.lengthBytes);
  } finally {
    context.reader.inMessage = false;
  }
}

/** Never throws: every outcome becomes a reply, and a reply that cannot be sent is dropped. */
async function handleRequest(
  context: TransmissionContext,
  command: Command | undefined,
  request: Request,
  rejection: Rejection | null,
  payload: Buffer | null,
): Promise<void> {
  let outcome: ReplyBody | Rejection;
  if (rejection || !command) {
    outcome = rejection ?? { errno: c.NBD_EINVAL, message: 'unknown command' };
    context.logger.info(
      { type: request.type, errno: outcome.errno, reason: outcome.message },
      'nbd: request refused',
    );
  } else {
    outcome = await execute(context, command, request, payload);
  }
  try {
    await sendReply(context, request, outcome);
  } catch {
    // The client went away; nothing is left to tell it.
  }
}

async function execute(
  context: TransmissionContext,
  command: Command,
  request: Request,
  payload: Buffer | null,
): Promise<ReplyBody | Rejection> {
  // Validation bounded offset + length by the volume size, itself a safe integer.
  const offsetBytes = Number(request.offset);
  try {
    const volume = context.negotiated.lease.volume;
    const body = await command.run(volume, request, offsetBytes, payload, context);
    // FUA on the commands other than WRITE (which asks the volume itself): a flush after it.
    if ((request.flags & c.NBD_CMD_FLAG_FUA) !== 0 && command.writes && request.type !== c.NBD_CMD_WRITE) {
      await volume.flush();
    }
    return body;
  } catch (error) {
    const sdError = asSdError(error);
    const fields = {
      command: command.name,
      offsetBytes,
      lengthBytes: request.lengthBytes,
      code: sdError.code,
    };
    if (isClusterError(sdError))
      context.logger.error({ ...fields, err: sdError }, 'nbd: request failed');
    else context.logger.info({ ...fields, reason: sdError.message }, 'nbd: request failed');
    return { errno: nbdErrnoFor(sdError), message: sdError.message };
  }
}

function sendReply(
  context: TransmissionContext,
  request: Request,
  outcome: ReplyBody | Rejection,
): Promise<void> {
  const structured = context.negotiated.structuredReplies;
  const { handle } = request;
  if ('errno' in outcome) {
    const frame = structured
      ? replies.errorChunk(handle, outcome.errno, outcome.message)
      : replies.simpleReply(handle, outcome.errno);
    return context.writer.send(frame);
  }
  switch (outcome.kind) {
    case 'ok':
      return context.writer.send(replies.simpleReply(handle, 0));
    case 'data':
      if (!structured) return context.writer.send(replies.simpleReply(handle, 0, outcome.data));
      if (outcome.data.length === 0) return context.writer.send(replies.noneChunk(handle));
      return context.writer.send(
        replies.offsetDataChunk(handle, Number(request.offset), outcome.data),
      );
    case 'status': {
      const contextId = context.negotiated.baseAllocationContextId ?? 0;
      return context.writer.send(replies.blockStatusChunk(handle, contextId, outcome.descriptors));
    }
  }
}

// ---- Command bodies -----------------------------------------------------------------------------

async function runRead(volume: Volume, request: Request, offsetBytes: number): Promise<ReplyBody> {
  if (request.lengthBytes === 0) return { kind: 'data', data: Buffer.alloc(0) };
  const data = await volume.read(offsetBytes, request.lengthBytes);
  // A short buffer would desynchronise a simple reply stream: fail the request instead.
  if (data.length !== request.lengthBytes) {
    throw new SdError('INTERNAL', `volume returned ${data.length} of ${request.lengthBytes} bytes`);
  }
  return { kind: 'data', data };
}

async function runWrite(
  volume: Volume,
  request: Request,
  offsetBytes: number,
  payload: Buffer | null,
): Promise<ReplyBody> {
  // FUA: this write on every replica's disk before the reply (docs/durability.md).
  const fua = (request.flags & c.NBD_CMD_FLAG_FUA) !== 0;
  if (payload && payload.length > 0) await volume.write(offsetBytes, payload, fua);
  return ok;
}

async function runTrim(volume: Volume, request: Request, offsetBytes: number): Promise<ReplyBody> {
  await inPieces(
    offsetBytes,
    request.lengthBytes,
    nbdZeroPieceBytesMax,
    (pieceOffsetBytes, pieceLengthBytes) => volume.discard(pieceOffsetBytes, pieceLengthBytes),
  );
  return ok;
}

/**
 * Without NO_HOLE the volume may deallocate whole objects (they read as zeros). With NO_HOLE the
 * spec says the area MUST end up provisioned, so we write real zeroes instead.
 */
async function runWriteZeroes(
  volume: Volume,
  request: Request,
  offsetBytes: number,
  _payload: Buffer | null,
  context: TransmissionContext,
): Promise<ReplyBody> {
  if ((request.flags & c.NBD_CMD_FLAG_NO_HOLE) === 0) {
    await inPieces(
      offsetBytes,
      request.lengthBytes,
      nbdZeroPieceBytesMax,
      (pieceOffsetBytes, pieceLengthBytes) =>
        volume.writeZeroes(pieceOffsetBytes, pieceLengthBytes),
    );
  } else {
    const zeroes = context.zeroBuffer;
    await inPieces(
      offsetBytes,
      request.lengthBytes,
      zeroes.length,
      (pieceOffsetBytes, pieceLengthBytes) =>
        volume.write(pieceOffsetBytes, zeroes.subarray(0, pieceLengthBytes)),
    );
  }
  return ok;
}

async function inPieces(
  offsetBytes: number,
  lengthBytes: number,
  pieceBytesMax: number,
  run: (pieceOffsetBytes: number, pieceLengthBytes: number) => Promise<void>,
): Promise<void> {
  for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += pieceBytesMax) {
    await run(offsetBytes + doneBytes, Math.min(pieceBytesMax, lengthBytes - doneBytes));
  }
}

async function runBlockStatus(
  volume: Volume,
  request: Request,
  offsetBytes: number,
): Promise<ReplyBody> {
  const extents = await volume.extents(offsetBytes, request.lengthBytes);
  const requestOne = (request.flags & c.NBD_CMD_FLAG_REQ_ONE) !== 0;
  const descriptors = statusDescriptors(extents, requestOne ? 1 : nbdBlockStatusDescriptorsMax);
  if (descriptors.length === 0) throw new SdError('INTERNAL', 'volume reported no extents');
  return { kind: 'status', descriptors };
}

/** Merges neighbours of equal status; holes read as zeroes, so they are HOLE|ZERO. */
export function statusDescriptors(
  extents: readonly Extent[],
  descriptorsMax: number,
): replies.StatusDescriptor[] {
  const descriptors: replies.StatusDescriptor[] = [];
  for (const extent of extents) {
    if (extent.lengthBytes === 0) continue;
    const status = extent.allocated ? 0 : c.NBD_STATE_HOLE | c.NBD_STATE_ZERO;
    const last = descriptors[descriptors.length - 1];
    if (last && last.status === status) {
      last.lengthBytes += extent.lengthBytes;
      continue;
    }
    if (descriptors.length === descriptorsMax) break;
    descriptors.push({ lengthBytes: extent.lengthBytes, status });
  }
  return descriptors;
}
