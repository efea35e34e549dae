// Addresses of this host, for option parsing: the only part of the daemon besides the transport
// that asks the operating system's network layer anything.
import * as net from 'node:net';
import * as os from 'node:os';

export function isIpAddress(text: string): boolean {
  return net.isIP(text) !== 0;
}

/** A non-loopback IPv4 address of this host, if it has one. */
export function externalIpv4(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const entry of list ?? []) if (entry.family === 'IPv4' && !entry.internal) return entry.address;
  }
  return undefined;
}
