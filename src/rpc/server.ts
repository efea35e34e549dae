// The server side of the protocol: frames in on any stream a Transport accepted, each request
// decoded against the protocol and run by its entry in a handler table typed against it.
import type { Duplex } from 'node:stream';
import { SdError, asSdError } from '../engine/errors.js';
import { malformedLogBurst, malformedLogIntervalMs, rpcInflightRequestsMax } from '../engine/limits.js';
import { TokenBucket } from '../engine/token-bucket.js';
import type { Clock } from '../io/clock.js';
import type { Log } from '../io/log.js';
import { decodeRequest } from './decode.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';
import { protocol, type AnyRequest, type ValueAndData, type Op, type Request, type RequestPayload, type ResultOf } from './protocol.js';

export type Handler<K extends Op> = (request: Request<K>, payload: RequestPayload<K>) => Promise<ResultOf<K>>;
/** One entry per op: a missing op, or a handler of the wrong shape, does not compile. */
export type Handlers = { readonly [K in Op]: Handler<K> };

export interface Reply {
  value: unknown;
  payload: Buffer | undefined;
}

export type FrameHandler = (header: Record<string, unknown>, payload: Buffer | undefined) => Promise<Reply>;

/**
 * Warnings about what clients send, through a token bucket on the clock: `burst` at once, then
 * one per interval; the ones held back are counted into the next line. Never a stack.
 */
export function rateLimitedWarn(clock: Clock, intervalMs: number, log: Pick<Log, 'warn'>, burst = malformedLogBurst) {
  const bucket = new TokenBucket(burst, intervalMs);
  let suppressed = 0;
  return (fields: object, message: string): void => {
    if (!bucket.take(clock.nowMs())) {
      suppressed += 1;
      return;
    }
    log.warn({ ...fields, suppressed }, message);
    suppressed = 0;
  };
}

/**
 * Decodes, then runs the op's handler. A malformed request is answered with its error (PROTOCOL,
 * INVALID_ARGUMENT) and logged as a rate-limited warning without a stack; it reaches no handler.
 */
export function protocolHandler(handlers: Handlers, clock: Clock, log: Pick<Log, 'warn'>): FrameHandler {
  const warn = rateLimitedWarn(clock, malformedLogIntervalMs, log);
  return async (header, payload) => {
    const decoded = decodeRequest(header, payload);
    if (!decoded.ok) {
      warn({ code: decoded.error.code, reason: decoded.error.message }, 'malformed request');
      throw decoded.error;
    }
    const { request } = decoded.value;
    // decodeRequest checked `request` against the declaration of request.op, whose handler this is.
    const handler = handlers[request.op] as (request: AnyRequest, payload: Buffer | undefined) => Promise<unknown>;
    const result = await handler(request, decoded.value.payload);
    switch (protocol[request.op].payload) {
      case 'reply':
        return { value: null, payload: result as Buffer };
      case 'valueAndData': {
        const { value, data } = result as ValueAndData<unknown>;
        return { value, payload: data };
      }
      default:
        return { value: result, payload: undefined };
    }
  };
}

/**
 * Serves frames on a stream: each request runs concurrently; a malformed stream closes only that
 * connection. A handler's SdError becomes an error reply; anything else is a bug and is logged.
 */
export function serveConnection(stream: Duplex, handle: FrameHandler, onBug: (error: unknown) => void): void {
  const decoder = new FrameDecoder();
  let inflight = 0;
  stream.on('error', () => stream.destroy());
  stream.on('data', (chunk: Buffer) => {
    let frames: Frame[];
    try {
      frames = decoder.push(chunk);
    } catch {
      stream.destroy();
      return;
    }
    for (const frame of frames) {
      const id = frame.header['id'];
      if (typeof id !== 'number') {
        stream.destroy();
        return;
      }
      inflight += 1;
      if (inflight >= rpcInflightRequestsMax) stream.pause();
      handle(frame.header, frame.payload)
        .then(
          (reply) => encodeFrame({ id, ok: true, value: reply.value }, reply.payload),
          (error: unknown) => encodeFrame(errorHeader(id, error, onBug)),
        )
        .then((pieces) => {
          if (!stream.destroyed) for (const piece of pieces) stream.write(piece);
        })
        .catch(onBug)
        .finally(() => {
          inflight -= 1;
          if (inflight < rpcInflightRequestsMax && stream.isPaused()) stream.resume();
        });
    }
  });
}

function errorHeader(id: number, error: unknown, onBug: (error: unknown) => void): object {
  let sd: SdError;
  try {
    sd = asSdError(error);
  } catch (bug) {
    onBug(bug);
    sd = new SdError('INTERNAL', 'internal error');
  }
  const header = { id, ok: false, code: sd.code, message: sd.message };
  return sd.epoch === undefined ? header : { ...header, epoch: sd.epoch };
}
