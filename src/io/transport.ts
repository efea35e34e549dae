// The network, passed in: TCP for production; the simulator hands in a network of in-memory
// streams that delays, drops and partitions. Callers see byte streams either way.
import * as net from 'node:net';
import type { Duplex } from 'node:stream';

export interface Listener {
  /** The port actually bound (useful when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

export interface Transport {
  /**
   * Accepts connections on host:port. Rejects with an Error whose `code` is 'EADDRINUSE' or
   * another errno-style code when it cannot listen.
   */
  listen(host: string, port: number, onConnection: (stream: Duplex, remote: string) => void): Promise<Listener>;
  /** A stream to host:port; rejects with an Error carrying an errno-style `code` on failure. */
  connect(host: string, port: number): Promise<Duplex>;
}

export const tcpTransport: Transport = {
  listen(host, port, onConnection) {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => {
        socket.setNoDelay(true);
        onConnection(socket, `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`);
      });
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const address = server.address();
        resolve({
          port: typeof address === 'object' && address ? address.port : port,
          close: () => new Promise<void>((done) => server.close(() => done())),
        });
      });
    });
  },
  connect(host, port) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  },
};
