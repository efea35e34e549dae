// A Transport of in-memory stream pairs: sheep in one process, no sockets. `tap` sees every chunk
// a server writes back, so a test can wait for a reply it expects.
import { Duplex } from 'node:stream';
import type { Listener, Transport } from '../../src/io/transport.js';

function streamPair(onServerWrite: (chunk: Buffer) => void): [client: Duplex, server: Duplex] {
  const sides: Duplex[] = [];
  const make = (index: 0 | 1) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        if (index === 1) onServerWrite(chunk);
        sides[1 - index]!.push(chunk);
        done();
      },
      final(done) {
        sides[1 - index]!.push(null);
        done();
      },
      destroy(error, done) {
        const other = sides[1 - index]!;
        if (!other.destroyed) other.destroy();
        done(error);
      },
    });
  sides.push(make(0), make(1));
  return [sides[0]!, sides[1]!];
}

export class MemoryTransport implements Transport {
  private readonly servers = new Map<string, (stream: Duplex, remote: string) => void>();
  tap: (chunk: Buffer) => void = () => undefined;

  async listen(host: string, port: number, onConnection: (stream: Duplex, remote: string) => void): Promise<Listener> {
    const key = `${host}:${port}`;
    if (this.servers.has(key)) throw Object.assign(new Error(`listen EADDRINUSE ${key}`), { code: 'EADDRINUSE' });
    this.servers.set(key, onConnection);
    return { port, close: async () => void this.servers.delete(key) };
  }

  async connect(host: string, port: number): Promise<Duplex> {
    const accept = this.servers.get(`${host}:${port}`);
    if (!accept) throw Object.assign(new Error(`connect ECONNREFUSED ${host}:${port}`), { code: 'ECONNREFUSED' });
    const [client, server] = streamPair((chunk) => this.tap(chunk));
    accept(server, 'memory');
    return client;
  }
}
