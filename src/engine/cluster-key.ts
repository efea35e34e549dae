// The cluster key as text (docs/security.md): one line, the base64 of 32 random bytes, which is
// what `openssl rand -base64 32` prints. The same text in a store's cluster.key, in an admin's key
// file, and in the cluster driver's messages.
import { clusterKeyBytes } from './limits.js';

/** The text of a key file. */
export function formatKey(key: Buffer): string {
  return `${key.toString('base64')}\n`;
}

/** The key in a key file's text, or undefined when it is not one. */
export function parseKey(text: Buffer | string): Buffer | undefined {
  const line = text.toString().trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(line)) return undefined;
  const key = Buffer.from(line, 'base64');
  return key.length === clusterKeyBytes && key.toString('base64') === line ? key : undefined;
}

