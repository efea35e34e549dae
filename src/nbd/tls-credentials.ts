// What NBD TLS runs on, read once when the server starts, in the layouts qemu and nbdkit use: a PSK
// file as `psktool` writes it (`identity:hexkey` lines) and a certificates directory holding
// server-cert.pem and server-key.pem. Every problem is one line naming the file.
import fs from 'node:fs';
import path from 'node:path';
import { SdError } from '../engine/errors.js';
import { nbdTlsFileBytesMax, nbdTlsPskBytesMax } from './limits.js';

export type NbdTlsMode = 'off' | 'on' | 'require';

export interface NbdTlsSettings {
  /** off: STARTTLS refused; on: offered; require: every option but STARTTLS and ABORT refused before it. */
  mode: NbdTlsMode;
  pskFile?: string;
  certificatesDir?: string;
  /** Clients must present a certificate signed by certificatesDir/ca-cert.pem (nbdkit's --tls-verify-peer). */
  verifyPeer?: boolean;
}

export interface NbdTlsCredentials {
  /** Identity → key. */
  psk: ReadonlyMap<string, Buffer> | null;
  /** ca: only with verifyPeer, to check client certificates against. */
  x509: { cert: Buffer; key: Buffer; ca: Buffer | null } | null;
}

/** `identity:hexkey` per line (psktool's format); blank lines and `#` comments are skipped. */
export function parsePskFile(text: string, fileName: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((rawLine, index) => {
    const line = rawLine.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${fileName} line ${index + 1}`;
    const colon = line.indexOf(':'); // GnuTLS too: the identity ends at the first colon
    const identity = line.slice(0, Math.max(colon, 0));
    const hex = line.slice(colon + 1);
    if (colon <= 0) throw new SdError('INVALID_ARGUMENT', `${where}: expected identity:hexkey`);
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) {
      throw new SdError('INVALID_ARGUMENT', `${where}: the key of ${identity} is not an even number of hex digits`);
    }
    if (hex.length / 2 > nbdTlsPskBytesMax) {
      throw new SdError('INVALID_ARGUMENT', `${where}: the key of ${identity} is over ${nbdTlsPskBytesMax} bytes`);
    }
    if (keys.has(identity)) throw new SdError('INVALID_ARGUMENT', `${where}: identity ${identity} appears twice`);
    keys.set(identity, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new SdError('INVALID_ARGUMENT', `${fileName}: no identity:hexkey line`);
  return keys;
}

function readSmallFile(file: string, what: string): Buffer {
  let data: Buffer;
  try {
    const size = fs.statSync(file).size;
    if (size > nbdTlsFileBytesMax) throw new SdError('INVALID_ARGUMENT', `${what} ${file} is over ${nbdTlsFileBytesMax} bytes`);
    data = fs.readFileSync(file);
  } catch (error) {
    if (error instanceof SdError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new SdError('INVALID_ARGUMENT', `cannot read ${what} ${file}: ${reason}`);
  }
  return data;
}

export function loadNbdTlsCredentials(settings: NbdTlsSettings): NbdTlsCredentials {
  const psk = settings.pskFile
    ? parsePskFile(readSmallFile(settings.pskFile, 'TLS PSK file').toString('utf8'), settings.pskFile)
    : null;
  const dir = settings.certificatesDir;
  const x509 = dir
    ? {
        cert: readSmallFile(path.join(dir, 'server-cert.pem'), 'TLS certificate'),
        key: readSmallFile(path.join(dir, 'server-key.pem'), 'TLS key'),
        ca: settings.verifyPeer ? readSmallFile(path.join(dir, 'ca-cert.pem'), 'TLS CA certificate') : null,
      }
    : null;
  // A PSK session carries no client certificate (TLS 1.3 forbids asking), so it could never pass.
  if (settings.verifyPeer && (!x509 || psk)) {
    throw new SdError('INVALID_ARGUMENT', 'verifying client certificates needs a certificates directory and no PSK file');
  }
  if (!psk && !x509) throw new SdError('INVALID_ARGUMENT', `NBD TLS ${settings.mode} needs a PSK file or a certificates directory`);
  return { psk, x509 };
}
