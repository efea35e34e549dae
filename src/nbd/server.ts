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
  nbdIdleTimeoutMsDefault,
  nbdReceiveBufferedBytesMax,
  nbdRefusingHandshakesMax,
  nbdRequestReadTimeoutMs,
  nbdWatchdogPeriodMs,
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
  /** Deadlines and the session cap where they differ from limits.ts (0 idle: never). */
  limits?: Partial<NbdServerLimits>;
}

export interface NbdServerLimits {
  connectionsMax: number;
  handshakeTimeoutMs: number;
  requestReadTimeoutMs: number;
  idleTimeoutMs: number;
}

const defaultLimits: NbdServerLimits = {
  connectionsMax: nbdConnectionsMax,
  handshakeTimeoutMs: nbdHandshakeTimeoutMs,
  requestReadTimeoutMs: nbdRequestReadTimeoutMs,
  idleTimeoutMs: nbdIdleTimeoutMsDefault,
};

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
  /** Connections past the cap, still in their refusing handshake. */
  refusing: number;
  nextConnectionId: number;
  limits: NbdServerLimits;
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
    refusing: 0,
    nextConnectionId: 1,
    limits: { ...defaultLimits, ...options.limits },
  };
  const server = net.createServer((socket) => acceptConnection(state, socket));
  server.maxConnections = state.limits.connectionsMax + nbdRefusingHandshakesMax;
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
  const refused = state.connections.size >= state.limits.connectionsMax;
  if (refused) state.refusing += 1;
  entry.finished = serveConnection(state, socket, entry, connectionId, refused).finally(() => {
    if (refused) state.refusing -= 1;
    else state.connections.delete(socket);
  });
  if (!refused) state.connections.set(socket, entry);
}

/** A session past the cap is told so when it asks for an export (NBD_REP_ERR_POLICY). */
function refusingRegistry(state: ServerState): { acquire(name: string): Promise<never> } {
  return {
    acquire: async () => {
      throw new SdError('BUSY', `too many NBD sessions (${state.limits.connectionsMax}); try again later`);
    },
  };
}

/**
 * The deadlines of one connection, checked every second: the handshake as a whole; a request
 * half read; no traffic at all (only if an idle timeout is set). `reader` is read each time: it
 * is replaced when the connection moves to TLS. Returns a stop function.
 */
function watchConnection(state: ServerState, socket: net.Socket, reader: () => StreamReader, inHandshake: () => boolean): () => void {
  const { limits } = state;
  const acceptedMs = Date.now();
  let traffic = -1;
  let lastTrafficMs = acceptedMs;
  let partialSinceMs: number | undefined;
  const timer = setInterval(() => {
    const nowMs = Date.now();
    let reason: string | undefined;
    if (inHandshake()) {
      if (nowMs - acceptedMs > limits.handshakeTimeoutMs) reason = `handshake not done within ${limits.handshakeTimeoutMs} ms`;
    } else {
      partialSinceMs = reader().awaitingRest ? (partialSinceMs ?? nowMs) : undefined;
      const now = socket.bytesRead + socket.bytesWritten;
      if (now !== traffic) lastTrafficMs = nowMs;
      traffic = now;
      if (partialSinceMs !== undefined && nowMs - partialSinceMs > limits.requestReadTimeoutMs) {
        reason = `request not complete within ${limits.requestReadTimeoutMs} ms`;
      } else if (limits.idleTimeoutMs > 0 && nowMs - lastTrafficMs > limits.idleTimeoutMs) {
        reason = `idle for ${limits.idleTimeoutMs} ms`;
      }
    }
    if (reason === undefined) return;
    state.logger.info({ peer: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, reason }, 'nbd: connection closed');
    socket.destroy();
  }, Math.min(nbdWatchdogPeriodMs, limits.handshakeTimeoutMs));
  return () => clearInterval(timer);
}

async function serveConnection(
  state: ServerState,
  socket: net.Socket,
  entry: { reader: StreamReader },
  connectionId: number,
  refused: boolean,
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
  socket.on('error', () => {}); // reported through the reader and writer
  let inHandshake = true;
  const stopWatching = watchConnection(state, socket, () => entry.reader, () => inHandshake);
  let lease: VolumeLease | null = null;
  try {
    const context = {
      reader,
      writer,
      registry: refused ? refusingRegistry(state) : { acquire: (spec: string) => state.registry.acquire(spec, peer) },
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
    inHandshake = false;
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
    stopWatching();
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
