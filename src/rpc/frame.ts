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

/** The header of the frame in progress, parsed as soon as it is in, before its payload. */
export interface FrameHead {
  header: Record<string, unknown>;
  payloadBytes: number;
}

/**
 * Accumulates socket chunks and cuts frames; throws SdError PROTOCOL on a malformed stream. A
 * reader can take the header of a frame before its payload (`head`), to decide whether it has
 * room for the payload before reading on.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private pendingHead: FrameHead | undefined;

  /** Bytes received and not yet cut into frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Whether part of a frame is in (its header may have been taken already). */
  get partial(): boolean {
    return this.buffered > 0 || this.pendingHead !== undefined;
  }

  /** Appends a chunk and returns every frame now complete. */
  push(chunk: Buffer): Frame[] {
    this.append(chunk);
    const frames: Frame[] = [];
    for (;;) {
      const frame = this.next();
      if (!frame) return frames;
      frames.push(frame);
    }
  }

  append(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The header of the next frame once its prefix and header are in; lengths checked first. */
  head(): FrameHead | undefined {
    if (this.pendingHead) return this.pendingHead;
    if (this.buffered < prefixBytes) return undefined;
    const prefix = this.peek(prefixBytes);
    const frameBytes = prefix.readUInt32BE(0);
    const headerBytes = prefix.readUInt32BE(4);
    if (frameBytes + 4 > rpcFrameBytesMax || frameBytes < 4) {
      throw new SdError('PROTOCOL', `bad frame length ${frameBytes}`);
    }
    if (headerBytes > rpcHeaderBytesMax || headerBytes + 4 > frameBytes || headerBytes === 0) {
      throw new SdError('PROTOCOL', `bad header length ${headerBytes}`);
    }
    if (this.buffered < prefixBytes + headerBytes) return undefined;
    const raw = this.take(prefixBytes + headerBytes).subarray(prefixBytes);
    let header: unknown;
    try {
      header = packr.unpack(raw);
    } catch {
      throw new SdError('PROTOCOL', 'undecodable rpc header');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new SdError('PROTOCOL', 'rpc header is not a map');
    }
    this.pendingHead = { header: header as Record<string, unknown>, payloadBytes: frameBytes - 4 - headerBytes };
    return this.pendingHead;
  }

  /** The next frame if it is complete. */
  next(): Frame | undefined {
    const head = this.head();
    if (!head || this.buffered < head.payloadBytes) return undefined;
    this.pendingHead = undefined;
    const payload = head.payloadBytes > 0 ? this.take(head.payloadBytes) : undefined;
    return { header: head.header, payload };
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
      // Copies only the bytes wanted: the rest of the last chunk stays where it is.
      result = Buffer.allocUnsafeSlow(bytes);
      let filled = 0;
      while (filled < bytes) {
        const chunk = this.chunks[0]!;
        const want = bytes - filled;
        if (chunk.length <= want) {
          chunk.copy(result, filled);
          filled += chunk.length;
          this.chunks.shift();
        } else {
          chunk.copy(result, filled, 0, want);
          this.chunks[0] = chunk.subarray(want);
          filled += want;
        }
      }
    }
    this.buffered -= bytes;
    return result;
  }
}
