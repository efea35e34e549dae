// Cluster key files (docs/security.md): one line, the base64 of 32 random bytes (what
// `openssl rand -base64 32` prints), mode 0600. Read with the care of ssh's private keys.
import fs from 'node:fs';
import { SdError } from '../engine/errors.js';
import { parseKey } from '../engine/cluster-key.js';
import { keyFileBytesMax } from '../engine/limits.js';

/** Where an admin on another host keeps the cluster key (a copy of a store's cluster.key). */
export const defaultKeyFile = '/etc/sheepdog/cluster.key';

export function fileExists(file: string): boolean {
  return fs.existsSync(file);
}

function errnoText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return code ?? (error as Error).message;
}

/**
 * The key in `file`. Refuses, with one line naming the problem: a file it cannot read, one that
 * group or others may read (the key is then no secret), anything but one line of base64 of 32 bytes.
 */
export function readKeyFile(file: string): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted where a key should be must not hang the reader.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (error) {
    throw new SdError('AUTH', `cannot read key file ${file}: ${errnoText(error)}`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new SdError('AUTH', `key file ${file} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new SdError('AUTH', `key file ${file} is open to group or others (mode ${(stat.mode & 0o777).toString(8)}): chmod 600 it`);
    }
    const buffer = Buffer.alloc(keyFileBytesMax + 1);
    const length = fs.readSync(fd, buffer, 0, buffer.length, 0);
    const key = length <= keyFileBytesMax ? parseKey(buffer.subarray(0, length)) : undefined;
    if (!key) throw new SdError('AUTH', `${file} is not a cluster key file (one line: the base64 of 32 random bytes)`);
    return key;
  } catch (error) {
    if (error instanceof SdError) throw error;
    throw new SdError('AUTH', `cannot read key file ${file}: ${errnoText(error)}`);
  } finally {
    fs.closeSync(fd);
  }
}

