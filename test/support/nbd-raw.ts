// The smallest NBD client that can send one WRITE: fixed newstyle, NBD_OPT_EXPORT_NAME, simple
// replies. Real clients (qemu-io, nbdcopy) refuse to write to a read-only export before sending
// anything, so this is how a cluster test sees what the *server* answers to a write it must refuse.
import net from 'node:net';

const nbdMagic = Buffer.from('NBDMAGIC');
const optMagic = Buffer.from('IHAVEOPT');
const requestMagic = 0x25609513;
const simpleReplyMagic = 0x67446698;
const optExportName = 1;
const cmdWrite = 1;
const cmdDisconnect = 2;
const clientFixedNewstyle = 1;
const clientNoZeroes = 2;

export interface RawWriteResult {
  /** Transmission flags the server sent for the export. */
  transmissionFlags: number;
  sizeBytes: bigint;
  /** NBD error of the simple reply (0 = success, 1 = EPERM, ...). */
  error: number;
}

/** Reads exactly `n` bytes from the socket (or rejects when it closes first). */
function reader(socket: net.Socket): (n: number) => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  let waiting: { n: number; resolve(b: Buffer): void; reject(e: Error): void } | undefined;
  let ended: Error | undefined;
  const pump = () => {
    if (!waiting) return;
    if (buffered.length >= waiting.n) {
      const { n, resolve } = waiting;
      waiting = undefined;
      const out = buffered.subarray(0, n);
      buffered = buffered.subarray(n);
      resolve(out);
    } else if (ended) {
      const { reject } = waiting;
      waiting = undefined;
      reject(ended);
    }
  };
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    pump();
  });
  socket.on('close', () => {
    ended = new Error('connection closed by the server');
    pump();
  });
  socket.on('error', (error) => {
    ended = error;
    pump();
  });
  return (n) =>
    new Promise((resolve, reject) => {
      waiting = { n, resolve, reject };
      pump();
    });
}

/** Opens `exportName` and sends one WRITE of `data` at `offset`; returns the server's answer. */
export async function rawNbdWrite(port: number, exportName: string, offset: number, data: Buffer): Promise<RawWriteResult> {
  const session = await rawNbdOpen(port, exportName);
  try {
    const error = await session.write(offset, data);
    return { transmissionFlags: session.transmissionFlags, sizeBytes: session.sizeBytes, error };
  } finally {
    session.close();
  }
}

export interface RawNbdSession {
  sizeBytes: bigint;
  /** Transmission flags the server sent for the export. */
  transmissionFlags: number;
  /** One WRITE; resolves with the reply's NBD error (0: success). */
  write(offset: number, data: Buffer): Promise<number>;
  /** Sends NBD_CMD_DISC and closes the socket. */
  close(): void;
}

/**
 * Opens `exportName` with NBD_OPT_EXPORT_NAME and keeps the session, for tests that hold an
 * export open (a writer's lock). A refused export is a hard disconnect: this rejects.
 */
export async function rawNbdOpen(port: number, exportName: string): Promise<RawNbdSession> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  const read = reader(socket);
  try {
    const greeting = await read(18);
    if (!greeting.subarray(0, 8).equals(nbdMagic) || !greeting.subarray(8, 16).equals(optMagic)) throw new Error('not a fixed-newstyle NBD server');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFixedNewstyle | clientNoZeroes);
    const name = Buffer.from(exportName);
    const option = Buffer.alloc(16);
    optMagic.copy(option, 0);
    option.writeUInt32BE(optExportName, 8);
    option.writeUInt32BE(name.length, 12);
    socket.write(Buffer.concat([flags, option, name]));
    const exportInfo = await read(10);
    let handle = 0n;
    return {
      sizeBytes: exportInfo.readBigUInt64BE(0),
      transmissionFlags: exportInfo.readUInt16BE(8),
      write: async (offset, data) => {
        handle += 1n;
        const request = Buffer.alloc(28);
        request.writeUInt32BE(requestMagic, 0);
        request.writeUInt16BE(cmdWrite, 6);
        request.writeBigUInt64BE(handle, 8);
        request.writeBigUInt64BE(BigInt(offset), 16);
        request.writeUInt32BE(data.length, 24);
        socket.write(Buffer.concat([request, data]));
        const reply = await read(16);
        if (reply.readUInt32BE(0) !== simpleReplyMagic || reply.readBigUInt64BE(8) !== handle) throw new Error('unexpected reply');
        return reply.readUInt32BE(4);
      },
      close: () => {
        const disconnect = Buffer.alloc(28);
        disconnect.writeUInt32BE(requestMagic, 0);
        disconnect.writeUInt16BE(cmdDisconnect, 6);
        socket.end(disconnect);
      },
    };
  } catch (error) {
    socket.destroy();
    throw error;
  }
}
