// Damage done to a stored copy behind its sheep's back, for the integrity tests.
import fs from 'node:fs';

/** Flips bits of the byte at `at` of `file` (`mask`: which). */
export function flipByte(file: string, at: number, mask = 0x5a): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ mask;
    fs.writeSync(fd, byte, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}
