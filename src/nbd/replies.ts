// Encoders of transmission-phase replies: simple replies and structured reply chunks. Each returns
// the frame as a list of buffers so large payloads go to the socket as they are.
import * as c from './constants.js';
import { nbdErrorMessageBytesMax } from './limits.js';
import { encodeMessage } from './wire.js';

export function simpleReply(handle: bigint, errno: number, data?: Buffer): Buffer[] {
  const header = Buffer.allocUnsafe(c.SIMPLE_REPLY_HEADER_BYTES);
  header.writeUInt32BE(c.NBD_SIMPLE_REPLY_MAGIC, 0);
  header.writeUInt32BE(errno, 4);
  header.writeBigUInt64BE(handle, 8);
  return data && data.length > 0 ? [header, data] : [header];
}

function chunkHeader(handle: bigint, flags: number, type: number, lengthBytes: number): Buffer {
  const header = Buffer.allocUnsafe(c.STRUCTURED_REPLY_HEADER_BYTES);
  header.writeUInt32BE(c.NBD_STRUCTURED_REPLY_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(handle, 8);
  header.writeUInt32BE(lengthBytes, 16);
  return header;
}

export function noneChunk(handle: bigint): Buffer[] {
  return [chunkHeader(handle, c.NBD_REPLY_FLAG_DONE, c.NBD_REPLY_TYPE_NONE, 0)];
}

/**
 * The whole READ as one final data chunk: we hold all the data before sending, so no error can
 * appear while it is on the wire, which is what allows NBD_REPLY_FLAG_DONE on a content chunk.
 */
export function offsetDataChunk(handle: bigint, offsetBytes: number, data: Buffer): Buffer[] {
  const header = chunkHeader(
    handle,
    c.NBD_REPLY_FLAG_DONE,
    c.NBD_REPLY_TYPE_OFFSET_DATA,
    8 + data.length,
  );
  const offset = Buffer.allocUnsafe(8);
  offset.writeBigUInt64BE(BigInt(offsetBytes), 0);
  return [header, offset, data];
}

export function errorChunk(handle: bigint, errno: number, message: string): Buffer[] {
  const messageBytes = encodeMessage(message, nbdErrorMessageBytesMax);
  const payload = Buffer.allocUnsafe(6 + messageBytes.length);
  payload.writeUInt32BE(errno, 0);
  payload.writeUInt16BE(messageBytes.length, 4);
  messageBytes.copy(payload, 6);
  return [
    chunkHeader(handle, c.NBD_REPLY_FLAG_DONE, c.NBD_REPLY_TYPE_ERROR, payload.length),
    payload,
  ];
}

export interface StatusDescriptor {
  lengthBytes: number;
  status: number;
}

export function blockStatusChunk(
  handle: bigint,
  contextId: number,
  descriptors: readonly StatusDescriptor[],
): Buffer[] {
  const payload = Buffer.allocUnsafe(4 + 8 * descriptors.length);
  payload.writeUInt32BE(contextId, 0);
  descriptors.forEach((descriptor, index) => {
    payload.writeUInt32BE(descriptor.lengthBytes, 4 + 8 * index);
    payload.writeUInt32BE(descriptor.status, 8 + 8 * index);
  });
  return [
    chunkHeader(handle, c.NBD_REPLY_FLAG_DONE, c.NBD_REPLY_TYPE_BLOCK_STATUS, payload.length),
    payload,
  ];
}
