// Small pure helpers for parsing option data and encoding strings, shared by the phases.
import { SdError } from '../engine/errors.js';
import { nbdStringBytesMax } from './limits.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bounds-checked reads over one option's data; every failure is INVALID_ARGUMENT. */
export class OptionDataParser {
  private offsetBytes = 0;

  constructor(private readonly data: Buffer) {}

  uint16(): number {
    this.need(2);
    const value = this.data.readUInt16BE(this.offsetBytes);
    this.offsetBytes += 2;
    return value;
  }

  uint32(): number {
    this.need(4);
    const value = this.data.readUInt32BE(this.offsetBytes);
    this.offsetBytes += 4;
    return value;
  }

  /** A protocol string: valid UTF-8, no NUL, at most nbdStringBytesMax bytes. */
  string(lengthBytes: number): string {
    if (lengthBytes > nbdStringBytesMax) {
      throw new SdError('INVALID_ARGUMENT', `string of ${lengthBytes} bytes is over the limit`);
    }
    this.need(lengthBytes);
    const bytes = this.data.subarray(this.offsetBytes, this.offsetBytes + lengthBytes);
    this.offsetBytes += lengthBytes;
    if (bytes.includes(0)) throw new SdError('INVALID_ARGUMENT', 'string contains NUL');
    try {
      return utf8.decode(bytes);
    } catch {
      throw new SdError('INVALID_ARGUMENT', 'string is not valid UTF-8');
    }
  }

  expectEnd(): void {
    if (this.offsetBytes !== this.data.length) {
      throw new SdError('INVALID_ARGUMENT', 'option data has trailing bytes');
    }
  }

  private need(lengthBytes: number): void {
    if (this.offsetBytes + lengthBytes > this.data.length) {
      throw new SdError('INVALID_ARGUMENT', 'option data is too short');
    }
  }
}

/** UTF-8 bytes of `text`, cut at a character boundary to at most maxBytes. */
export function encodeMessage(text: string, maxBytes: number): Buffer {
  let bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let cutBytes = maxBytes;
  // Continuation bytes are 10xxxxxx: back up to the start of a character.
  while (cutBytes > 0 && ((bytes[cutBytes] ?? 0) & 0xc0) === 0x80) cutBytes -= 1;
  bytes = bytes.subarray(0, cutBytes);
  return bytes;
}
