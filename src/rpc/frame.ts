// Wire format between sheep, and from dog/sheepfs to sheep:
//   u32 frameBytes | u32 headerBytes | msgpack header | raw payload
// Payloads (object data) stay out of msgpack so 4 MiB buffers are never re-encoded. Lengths are
// checked against the limits before any allocation.
import { Packr } from 'msgpackr';
import { SdError } from '../engine/errors.js';
import { rpcFrameBytesMax, rpcHeaderBytesMax } from '../engine/limits.js';

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', useBigInt64: true } as never);
const prefixBytes = 8;

export interface Frame {
  header: Record<string, unknown>;
  payload: Buffer | undefined;
}

/** The prefix of every frame: u32 frameBytes (after this word), u32 headerBytes. */
export const framePrefixBytes = prefixBytes;

/** A frame's msgpack header (for observers of the wire, such as the simulator's epoch oracle). */
export function unpackHeader(bytes: Buffer): unknown {
  return packr.unpack(bytes);
}

export function encodeFrame(header: object, payload?: Buffer): Buffer[] {
  const headerBytes = packr.pack(header);
  if (headerBytes.length > rpcHeaderBytesMax) throw new SdError('PROTOCOL', 'rpc header too large');
  const frameBytes = 4 + headerBytes.length + (payload?.length ?? 0);
  if (frameBytes + 4 > rpcFrameBytesMax) throw new SdError('PROTOCOL', 'rpc frame too large');
  const prefix = Buffer.allocUnsafe(prefixBytes);
  prefix.writeUInt32BE(frameBytes, 0);
  prefix.writeUInt32BE(headerBytes.length, 4);
  return payload && payload.length > 0 ? [prefix, headerBytes, payload] : [prefix, headerBytes];
}

/** Accumulates socket chunks and cuts frames; throws SdError PROTOCOL on a malformed stream. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      const frame = this.next();
      if (!frame) return frames;
      frames.push(frame);
    }
  }

  private next(): Frame | undefined {
    if (this.bufferedBytes < prefixBytes) return undefined;
    const prefix = this.peek(prefixBytes);
    const frameBytes = prefix.readUInt32BE(0);
    const headerBytes = prefix.readUInt32BE(4);
    if (frameBytes + 4 > rpcFrameBytesMax || frameBytes < 4) {
      throw new SdError('PROTOCOL', `bad frame length ${frameBytes}`);
    }
    if (headerBytes > rpcHeaderBytesMax || headerBytes + 4 > frameBytes || headerBytes === 0) {
      throw new SdError('PROTOCOL', `bad header length ${headerBytes}`);
    }
    if (this.bufferedBytes < frameBytes + 4) return undefined;
    const whole = this.take(frameBytes + 4);
    let header: unknown;
    try {
      header = packr.unpack(whole.subarray(prefixBytes, prefixBytes + headerBytes));
    } catch {
      throw new SdError('PROTOCOL', 'undecodable rpc header');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new SdError('PROTOCOL', 'rpc header is not a map');
    }
    const payload = whole.length > prefixBytes + headerBytes ? whole.subarray(prefixBytes + headerBytes) : undefined;
    return { header: header as Record<string, unknown>, payload };
  }

  private peek(bytes: number): Buffer {
    if (this.chunks[0]!.length >= bytes) return this.chunks[0]!.subarray(0, bytes);
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined.subarray(0, bytes);
  }

  private take(bytes: number): Buffer {
    const first = this.chunks[0]!;
    let result: Buffer;
    if (first.length >= bytes) {
      result = first.subarray(0, bytes);
      if (first.length === bytes) this.chunks.shift();
      else this.chunks[0] = first.subarray(bytes);
    } else {
      const joined = Buffer.concat(this.chunks);
      result = joined.subarray(0, bytes);
      this.chunks = joined.length > bytes ? [joined.subarray(bytes)] : [];
    }
    this.bufferedBytes -= bytes;
    return result;
  }
}
