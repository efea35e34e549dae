// Sizes as users type and read them: K/M/G/T/P are powers of 1024, as the original dog.
import { SdError } from './errors.js';

/** 16 PiB: the largest hyper volume; exact in a double. */
const sizeBytesMax = 1n << 54n;

const suffixShift: Record<string, number> = { '': 0, K: 10, M: 20, G: 30, T: 40, P: 50, E: 60 };

/** Parses `123`, `4M`, `1G`, `16P` (case-insensitive, optional B) exactly, up to 16 PiB. */
export function parseSizeBigint(text: string, what = 'size'): bigint {
  const match = /^(\d+)([kmgtpe]?)b?$/i.exec(text.trim());
  if (!match) throw new SdError('INVALID_ARGUMENT', `Invalid ${what}: '${text}'`);
  const shift = suffixShift[(match[2] ?? '').toUpperCase()] ?? 0;
  const value = BigInt(match[1] ?? '0') << BigInt(shift);
  if (value > sizeBytesMax) throw new SdError('TOO_LARGE', `Invalid ${what}: '${text}' is too large`);
  return value;
}

/** Like parseSizeBigint, as a number: above 2^53 only values a double holds exactly. */
export function parseSize(text: string, what = 'size'): number {
  const value = parseSizeBigint(text, what);
  if (BigInt(Number(value)) !== value) {
    throw new SdError('INVALID_ARGUMENT', `Invalid ${what}: '${text}' is not exact; use a multiple of 1K`);
  }
  return Number(value);
}

const units = ['MB', 'GB', 'TB', 'PB', 'EB'];

/** The original's strnumber(): MB and up, one decimal below 10. */
export function formatSize(bytes: number): string {
  let size = bytes / (1024 * 1024);
  let unit = 0;
  while (unit < units.length - 1 && size >= 1024) {
    size /= 1024;
    unit += 1;
  }
  return size >= 10 ? `${size.toFixed(0)} ${units[unit]}` : `${size.toFixed(1)} ${units[unit]}`;
}
