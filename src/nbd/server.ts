// The NBD server: accepts TCP connections and runs each through handshake then transmission. This
// is the only file of src/nbd that touches `net` and timers (tls.ts wraps sockets for STARTTLS); the
// phases work on any Duplex stream.
import net from 'node:net';
import { SdError } from '../engine/errors.js';
import type { VolumeProvider } from '../engine/volume.js';
import { ExportRegistry, type VolumeLease } from './exports.js';
import { runHandshake } from './handshake.js';
import {
  nbdConnectionsMax,
  nbdHandshakeTimeoutMs,
  nbdReceiveBufferedBytesMax,
  nbdZeroBufferBytes,
} from './limits.js';
import { type NbdLogger, silentLogger } from './logger.js';
import { StreamReader } from './reader.js';
import { noNbdTls, type NbdTls, upgradeToTls } from './tls.js';
import { runTransmission } from './transmission.js';
import { FrameWriter } from './writer.js';

export type { NbdLogger } from './logger.js';
export type { NbdTls, NbdTlsSettings } from './tls.js';
export { prepareNbdTls } from './tls.js';

export interface NbdServerOptions {
  host: string;
  /** 0 picks an ephemeral port; the chosen one is in the result. */
  port: number;
  provider: VolumeProvider;
  logger?: NbdLogger;
  /**
   * Gather concurrent WRITEs to one object into larger writes (gather.ts). Off by default: a
   * volume then sees every request as its own write, as the protocol tests expect.
   */
  gatherWrites?: boolean;
  /** NBD_OPT_STARTTLS, from prepareNbdTls (off when absent). */
  tls?: NbdTls;
}

export interface NbdServer {
  readonly port: number;
  /** Stops listening, lets in-flight requests finish, then closes every connection. */
  close(): Promise<void>;
}

interface ServerState {
  provider: VolumeProvider;
  registry: ExportRegistry;
  logger: NbdLogger;
  zeroBuffer: Buffer;
  tls: NbdTls;
  /** `reader` is replaced when the connection moves to TLS, so that close() still reaches it. */
  connections: Map<net.Socket, { reader: StreamReader; finished: Promise<void> }>;
  closing: boolean;
  nextConnectionId: number;
}

export async function startNbdServer(options: NbdServerOptions): Promise<NbdServer> {
  const logger = options.logger ?? silentLogger;
  const state: ServerState = {
    provider: options.provider,
    registry: new ExportRegistry(options.provider, options.gatherWrites ?? false),
    logger,
    zeroBuffer: Buffer.alloc(nbdZeroBufferBytes),
    tls: options.tls ?? noNbdTls,
    connections: new Map(),
    closing: false,
    nextConnectionId: 1,
  };
  const server = net.createServer((socket) => acceptConnection(state, socket));
  server.maxConnections = nbdConnectionsMax;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  state.logger.info({ host: options.host, port: address.port, tls: state.tls.mode }, 'nbd: listening');
  return { port: address.port, close: () => closeServer(state, server) };
}

function acceptConnection(state: ServerState, socket: net.Socket): void {
  const connectionId = state.nextConnectionId;
  state.nextConnectionId += 1;
  const entry = { reader: new StreamReader(socket, nbdReceiveBufferedBytesMax), finished: Promise.resolve() };
  entry.finished = serveConnection(state, socket, entry, connectionId).finally(() => {
    state.connections.delete(socket);
  });
  state.connections.set(socket, entry);
}

async function serveConnection(
  state: ServerState,
  socket: net.Socket,
  entry: { reader: StreamReader },
  connectionId: number,
): Promise<void> {
  const { logger } = state;
  const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  let reader = entry.reader;
  let writer = new FrameWriter(socket);
  const startTls =
    state.tls.mode === 'off'
      ? null
      : async () => {
          const secure = await upgradeToTls(state.tls, socket, logger, { connectionId, peer });
          entry.reader = new StreamReader(secure, nbdReceiveBufferedBytesMax);
          // close() may have come while TLS was starting, and reached only the plain reader.
          if (state.closing) entry.reader.close(new SdError('SHUTDOWN', 'server is shutting down'));
          return { reader: entry.reader, writer: new FrameWriter(secure) };
        };
  socket.setNoDelay(true);
  // A client that stalls in the handshake holds nothing of ours but the socket; drop it.
  socket.setTimeout(nbdHandshakeTimeoutMs, () => socket.destroy());
  socket.on('error', () => {}); // reported through the reader and writer
  let lease: VolumeLease | null = null;
  try {
    const context = {
      reader,
      writer,
      registry: state.registry,
      logger,
      listNames: () => state.provider.listNames(),
      tlsMode: state.tls.mode,
      startTls,
    };
    const handshake = await runHandshake(context);
    ({ reader, writer } = context);
    if (handshake.kind === 'closed') {
      await writer.end();
      return;
    }
    socket.setTimeout(0);
    const { negotiated } = handshake;
    lease = negotiated.lease;
    logger.info(
      {
        connectionId,
        peer,
        exportName: negotiated.exportName,
        structuredReplies: negotiated.structuredReplies,
        tls: negotiated.tls,
      },
      'nbd: transmission started',
    );
    const end = await runTransmission({
      reader,
      writer,
      negotiated,
      logger,
      zeroBuffer: state.zeroBuffer,
    });
    if (end === 'disconnect') await writer.end();
  } catch (error) {
    logConnectionError(logger, connectionId, peer, error);
  } finally {
    entry.reader.close(new SdError('SHUTDOWN', 'connection finished'));
    socket.destroy();
    await lease?.release().catch((error: unknown) => {
      logger.error({ connectionId, err: error }, 'nbd: closing volume failed');
    });
  }
}

function logConnectionError(
  logger: NbdLogger,
  connectionId: number,
  peer: string,
  error: unknown,
): void {
  if (!(error instanceof SdError)) {
    logger.error({ connectionId, peer, err: error }, 'nbd: connection failed');
    return;
  }
  const fields = { connectionId, peer, code: error.code, reason: error.message };
  if (error.code === 'PROTOCOL') logger.warn(fields, 'nbd: protocol violation, disconnected');
  else if (error.code === 'REFUSED') logger.warn(fields, 'nbd: refused, disconnected');
  else logger.info(fields, 'nbd: connection ended');
}

async function closeServer(state: ServerState, server: net.Server): Promise<void> {
  state.closing = true;
  const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
  // Stop reading requests; in-flight ones finish and are answered, then the socket closes.
  for (const { reader } of state.connections.values()) {
    reader.close(new SdError('SHUTDOWN', 'server is shutting down'));
  }
  await Promise.all([...state.connections.values()].map((connection) => connection.finished));
  await stopped;
}
