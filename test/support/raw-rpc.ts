// A raw connection to a real sheep that has proved the cluster key (src/rpc/auth.ts) and then
// speaks frames by hand: for tests that send what no client would.
import net from 'node:net';
import { connectSession } from '../../src/rpc/auth.js';
import { systemRandom } from '../../src/io/random.js';
import { encodeFrame, FrameDecoder } from '../../src/rpc/frame.js';

export interface RawSession {
  socket: net.Socket;
  /** Sends one request header (an id is added) and resolves with the reply header. */
  request(header: Record<string, unknown>): Promise<Record<string, unknown>>;
  close(): void;
}

export async function authenticatedSocket(port: number, key: Buffer): Promise<RawSession> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  await connectSession(socket, `127.0.0.1:${port}`, port, { random: systemRandom, keyFor: () => key });
  let nextId = 1;
  return {
    socket,
    request(header) {
      const id = nextId++;
      const decoder = new FrameDecoder();
      return new Promise((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          for (const frame of decoder.push(chunk)) {
            if (frame.header['id'] !== id) continue;
            socket.off('data', onData);
            resolve(frame.header);
          }
        };
        socket.on('data', onData);
        socket.once('error', reject);
        for (const piece of encodeFrame({ ...header, id })) socket.write(piece);
      });
    },
    close: () => socket.destroy(),
  };
}
