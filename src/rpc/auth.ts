// The handshake on the sheep port: before any request is served, both ends prove they hold the
// cluster key (docs/security.md). A challenge-response with HMAC-SHA256 from node:crypto, in the
// rpc's own frames:
//   client → server  { auth: 'hello', v: 1, nonce: Nc }
//   server → client  { auth: 'key', keyId, keyFile, nonce: Ns, proof: HMAC(K, server|port|Nc|Ns) }
//                 or { auth: 'none' }   this node has no key yet: only what format needs is served
//   client → server  { auth: 'proof', proof: HMAC(K, client|port|Nc|Ns) }
//   server → client  { auth: 'ok' }  or  { auth: 'refused', message }, and the connection closes
// The server proves first, so a client never answers a challenge for someone without the key; the
// port the client dialled is in both proofs, so a proof relayed from another sheep does not pass.
// Nonces come from the Random passed in (seeded under the simulator); HMAC is not randomness.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { SdError, isErrorCode } from '../engine/errors.js';
import { authHandshakeBytesMax, authHandshakeMs, authNonceBytes } from '../engine/limits.js';
import type { Clock } from '../io/clock.js';
import type { Random } from '../io/random.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';
import type { Op } from './protocol.js';
import type { FrameHandler } from './server.js';

/** How a connection was let in: with the key, or before this node had one (limited to `unkeyedOps`). */
export type Session = 'authenticated' | 'unkeyed';

/**
 * What a node without a key serves, to anybody: what format needs, and read-only facts about the
 * nodes. No data exists before format; nothing here changes or reveals any.
 */
export const unkeyedOps: ReadonlySet<Op> = new Set<Op>(['ping', 'cluster.info', 'node.list', 'node.info', 'peer.stat', 'cluster.format']);

const proofBytes = 32;
const keyIdBytes = 8;
const keyIdLabel = 'sheepdog cluster key id';
const protocolVersion = 1;

/** A public name of a key (a truncated HMAC under it): says which key to use, reveals nothing of it. */
export function keyIdOf(key: Buffer): string {
  return createHmac('sha256', key).update(keyIdLabel).digest().subarray(0, keyIdBytes).toString('hex');
}

function proofOf(key: Buffer, role: 'server' | 'client', port: number, clientNonce: Buffer, serverNonce: Buffer): Buffer {
  const portBytes = Buffer.alloc(2);
  portBytes.writeUInt16BE(port);
  return createHmac('sha256', key).update(`sheepdog-auth-${protocolVersion} ${role}\n`).update(portBytes).update(clientNonce).update(serverNonce).digest();
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function bytesField(value: unknown, length: number): Buffer | undefined {
  return value instanceof Uint8Array && value.length === length ? Buffer.from(value) : undefined;
}

// ---- server --------------------------------------------------------------------------------

export interface ServerAuth {
  /** The port this server listens on: clients bind the port they dialled into their proofs. */
  port: number;
  /** The cluster key, once this node has one. */
  key(): Buffer | undefined;
  /** Where an admin on this host finds the key (the store's copy): a hint for local clients. */
  keyFile: string | undefined;
  random: Random;
  clock: Clock;
  /** A connection that was refused, and why (for a rate-limited log line). */
  onRefused(reason: string): void;
}

/**
 * Runs the server side of the handshake on a fresh connection, then hands it to `onSession`. A
 * wrong key, a request before the handshake, an oversized or slow handshake: one refusal frame,
 * and the connection closes. Nothing else is read from it.
 */
export function acceptSession(stream: Duplex, auth: ServerAuth, onSession: (session: Session) => void): void {
  const decoder = new FrameDecoder();
  let receivedBytes = 0;
  let expected: Buffer | undefined; // the client's proof, once the server sent its challenge
  let done = false;
  let admitted = false;

  const finish = () => {
    done = true;
    timer.cancel();
    stream.off('data', onData);
    stream.off('error', onError);
    stream.off('close', onClose);
  };
  const send = (header: object) => {
    for (const piece of encodeFrame(header)) stream.write(piece);
  };
  const refuse = (reason: string, reply: object = { auth: 'refused', message: reason }) => {
    if (done) return;
    finish();
    auth.onRefused(reason);
    if (stream.destroyed) return;
    stream.on('error', () => stream.destroy());
    send(reply);
    stream.end(() => stream.destroy());
  };
  const admit = (session: Session) => {
    finish();
    admitted = true;
    onSession(session);
  };

  const step = (header: Record<string, unknown>): void => {
    if (expected === undefined) {
      const clientNonce = bytesField(header['nonce'], authNonceBytes);
      if (header['auth'] !== 'hello' || header['v'] !== protocolVersion || !clientNonce) {
        const id = header['id'];
        const message = 'authentication required: prove the cluster key first (a client of another version, or no client of this cluster)';
        refuse(message, typeof id === 'number' ? { id, ok: false, code: 'AUTH', message } : undefined);
        return;
      }
      const key = auth.key();
      if (!key) {
        send({ auth: 'none' });
        admit('unkeyed');
        return;
      }
      const serverNonce = auth.random.bytes(authNonceBytes);
      expected = proofOf(key, 'client', auth.port, clientNonce, serverNonce);
      const proof = proofOf(key, 'server', auth.port, clientNonce, serverNonce);
      send({ auth: 'key', keyId: keyIdOf(key), keyFile: auth.keyFile ?? null, nonce: serverNonce, proof });
      return;
    }
    if (header['auth'] === 'abort') {
      refuse('the client holds no key for this cluster');
      return;
    }
    const proof = bytesField(header['proof'], proofBytes);
    if (header['auth'] !== 'proof' || !proof || !sameBytes(proof, expected)) {
      refuse('wrong cluster key');
      return;
    }
    send({ auth: 'ok' });
    admit('authenticated');
  };

  function onData(chunk: Buffer): void {
    receivedBytes += chunk.length;
    if (receivedBytes > authHandshakeBytesMax) return refuse('handshake too large');
    let frames: Frame[];
    try {
      frames = decoder.push(chunk);
    } catch {
      return refuse('malformed handshake');
    }
    for (const frame of frames) {
      // The client waits for each answer: a frame past the last step is not a client of ours.
      if (admitted) {
        auth.onRefused('data before the handshake finished');
        stream.destroy();
        return;
      }
      if (done) return;
      step(frame.header);
    }
  }
  function onError(): void {
    finish();
    stream.destroy();
  }
  function onClose(): void {
    finish();
  }
  const timer = auth.clock.after(authHandshakeMs, () => refuse(`no handshake within ${authHandshakeMs} ms`));
  stream.on('data', onData);
  stream.on('error', onError);
  stream.on('close', onClose);
}

/**
 * The handler of an `unkeyed` session: what format needs, while this node has no key; anything
 * else gets what an unformatted cluster answers. Once the node has a key, such a session is
 * refused everything: the client must reconnect and prove the key.
 */
export function unkeyedHandler(handle: FrameHandler, hasKey: () => boolean, formatted: () => boolean): FrameHandler {
  return async (header, payload) => {
    if (hasKey()) throw new SdError('AUTH', 'this connection was opened before the cluster had a key: reconnect and prove it');
    const op = header['op'];
    if (typeof op === 'string' && unkeyedOps.has(op as Op)) return handle(header, payload);
    if (!formatted()) throw new SdError('NOT_FORMATTED', 'Waiting for cluster to be formatted');
    throw new SdError('AUTH', `this node has no cluster key yet: it serves only ${[...unkeyedOps].join(', ')}`);
  };
}

// ---- client --------------------------------------------------------------------------------

export interface ClientAuth {
  random: Random;
  /**
   * The key to prove to a server that names its key `keyId` (and, for a local admin, where its
   * copy lies). Throws SdError AUTH, worded for the user, when there is none.
   */
  keyFor(keyId: string, keyFile: string | undefined): Buffer;
}

/**
 * Runs the client side of the handshake on a fresh connection to `where` (which dialled `port`).
 * Resolves with the session; rejects with SdError AUTH (a key problem, either side) or NETWORK.
 */
export function connectSession(stream: Duplex, where: string, port: number, auth: ClientAuth): Promise<Session> {
  return new Promise<Session>((resolve, reject) => {
    const decoder = new FrameDecoder();
    const clientNonce = auth.random.bytes(authNonceBytes);
    let expected: 'challenge' | 'verdict' = 'challenge';
    const finish = () => {
      stream.off('data', onData);
      stream.off('close', onClose);
      stream.off('error', onError);
    };
    const fail = (error: SdError, goodbye?: object) => {
      finish();
      if (goodbye) {
        stream.on('error', () => stream.destroy());
        for (const piece of encodeFrame(goodbye)) stream.write(piece);
        stream.end(() => stream.destroy());
      } else {
        stream.destroy();
      }
      reject(error);
    };
    const send = (header: object) => {
      for (const piece of encodeFrame(header)) stream.write(piece);
    };
    const step = (header: Record<string, unknown>): void => {
      // A server over its connection cap answers with an rpc error frame (id 0) instead.
      if (header['id'] === 0 && header['ok'] === false && typeof header['code'] === 'string') {
        const message = typeof header['message'] === 'string' ? header['message'].slice(0, 200) : 'refused';
        return fail(new SdError(isErrorCode(header['code']) ? header['code'] : 'BUSY', `${where} refused the connection: ${message}`));
      }
      if (header['auth'] === 'refused') {
        const message = typeof header['message'] === 'string' ? header['message'].slice(0, 200) : 'refused';
        return fail(new SdError('AUTH', `${where} refused the connection: ${message}`));
      }
      if (expected === 'verdict') {
        if (header['auth'] !== 'ok') return fail(new SdError('PROTOCOL', `${where} answered the handshake with something else`));
        finish();
        resolve('authenticated');
        return;
      }
      if (header['auth'] === 'none') {
        finish();
        resolve('unkeyed');
        return;
      }
      const keyId = header['keyId'];
      const serverNonce = bytesField(header['nonce'], authNonceBytes);
      const proof = bytesField(header['proof'], proofBytes);
      const keyFile = typeof header['keyFile'] === 'string' ? header['keyFile'] : undefined;
      if (header['auth'] !== 'key' || typeof keyId !== 'string' || !/^[0-9a-f]{16}$/.test(keyId) || !serverNonce || !proof) {
        return fail(new SdError('PROTOCOL', `${where} answered the handshake with something else`));
      }
      let key: Buffer;
      try {
        key = auth.keyFor(keyId, keyFile);
      } catch (error) {
        const message = error instanceof SdError ? error.message : String(error);
        return fail(new SdError('AUTH', `cannot authenticate to ${where}: ${message}`), { auth: 'abort' });
      }
      if (!sameBytes(proof, proofOf(key, 'server', port, clientNonce, serverNonce))) {
        return fail(new SdError('AUTH', `${where} did not prove it holds the cluster key: not a sheep of this cluster`));
      }
      expected = 'verdict';
      send({ auth: 'proof', proof: proofOf(key, 'client', port, clientNonce, serverNonce) });
    };
    function onData(chunk: Buffer): void {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch {
        return fail(new SdError('PROTOCOL', `${where} sent a malformed handshake`));
      }
      for (const frame of frames) step(frame.header);
    }
    function onClose(): void {
      finish();
      reject(new SdError('NETWORK', `connection to ${where} closed during the handshake`));
    }
    function onError(): void {
      stream.destroy();
    }
    stream.on('data', onData);
    stream.on('close', onClose);
    stream.on('error', onError);
    send({ auth: 'hello', v: protocolVersion, nonce: clientNonce });
  });
}
