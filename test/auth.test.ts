// The key handshake of the sheep port (src/rpc/auth.ts) over an in-memory transport, the key
// files (src/io/key-file.ts, src/rpc/key-auth.ts), the join rules for keys (src/sheep/group.ts)
// and a simulated cluster formatted with a key. Real processes: test/auth-cluster.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { formatKey, parseKey } from '../src/engine/cluster-key.js';
import { SdError } from '../src/engine/errors.js';
import { authHandshakeMs } from '../src/engine/limits.js';
import { asVid, dataOid } from '../src/engine/oid.js';
import { readKeyFile } from '../src/io/key-file.js';
import { MemoryDisk } from '../src/io/memory-disk.js';
import { seededRandom } from '../src/io/random.js';
import { acceptSession, keyIdOf, unkeyedHandler, type ClientAuth } from '../src/rpc/auth.js';
import { RpcClient } from '../src/rpc/client.js';
import { encodeFrame, FrameDecoder, type Frame } from '../src/rpc/frame.js';
import { fileKeyAuth } from '../src/rpc/key-auth.js';
import { protocolHandler, serveConnection, type Handlers } from '../src/rpc/server.js';

const silent = { warn: () => undefined, info: () => undefined, debug: () => undefined, error: () => undefined };
import { Group, type StoreState } from '../src/sheep/group.js';
import { MetaStore } from '../src/store/meta.js';
import { ManualClock } from './support/manual-clock.js';
import { MemoryTransport } from './support/memory-transport.js';
import { SimTestCluster } from './support/sim-cluster.js';

const random = seededRandom(42);
const key = random.bytes(32);
const otherKey = random.bytes(32);
const oid = dataOid(asVid(1), 0);

/** A client that proves `k` whatever key id the server names (the check is the server's). */
function blindAuth(k: Buffer): ClientAuth {
  return { random, keyFor: () => k };
}

/** A server on 127.0.0.1:`port` holding `serverKey` (none: unkeyed), recording what ran. */
async function serve(transport: MemoryTransport, port: number, serverKey: Buffer | undefined, clock = new ManualClock()) {
  const ran: string[] = [];
  const refused: string[] = [];
  const table = new Proxy(
    {},
    {
      get: (_target, op: string) => async () => {
        ran.push(op);
        return op === 'ping' ? 'pong' : op === 'gw.read' ? Buffer.alloc(1) : null;
      },
    },
  ) as Handlers;
  const handle = protocolHandler(table, clock, { warn: () => undefined });
  const unkeyed = unkeyedHandler(handle, () => serverKey !== undefined, () => false);
  const auth = { port, key: () => serverKey, keyFile: '/var/lib/sheepdog/0/cluster.key', random, clock, onRefused: (r: string) => void refused.push(r) };
  await transport.listen('127.0.0.1', port, (stream) =>
    acceptSession(stream, auth, (session) => serveConnection(stream, session === 'authenticated' ? handle : unkeyed, () => undefined, { clock, log: silent })),
  );
  return { ran, refused, clock };
}

function client(transport: MemoryTransport, port: number, auth: ClientAuth, clock = new ManualClock()): RpcClient {
  return new RpcClient({ transport, clock, host: '127.0.0.1', port, auth });
}

async function rejection(promise: Promise<unknown>): Promise<SdError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  if (!(error instanceof SdError)) throw new Error(`expected an SdError, got ${String(error)}`);
  return error;
}

/** Sends raw frames on a fresh stream; collects the frames answered until the stream closes. */
async function raw(transport: MemoryTransport, port: number, frames: Buffer[]): Promise<{ frames: Frame[]; closed: Promise<void> }> {
  const stream = await transport.connect('127.0.0.1', port);
  const decoder = new FrameDecoder();
  const got: Frame[] = [];
  stream.on('data', (chunk: Buffer) => got.push(...decoder.push(chunk)));
  stream.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  for (const frame of frames) stream.write(frame);
  return { frames: got, closed };
}

describe('the sheep port handshake', () => {
  it('lets in a client that holds the key, and serves it', async () => {
    const transport = new MemoryTransport();
    const { ran } = await serve(transport, 7000, key);
    const c = client(transport, 7000, blindAuth(key));
    expect(await c.call('ping', {})).toBe('pong');
    await c.call('peer.remove', { oid, epoch: 1, from: 'x' });
    expect(ran).toEqual(['ping', 'peer.remove']);
    c.close();
  });

  it('refuses a client with another key in one line, and runs nothing for it', async () => {
    const transport = new MemoryTransport();
    const { ran, refused } = await serve(transport, 7000, key);
    const c = client(transport, 7000, blindAuth(otherKey));
    const error = await rejection(c.call('peer.remove', { oid, epoch: 1, from: 'x' }));
    expect(error.code).toBe('AUTH');
    // The client first sees that the server does not prove *its* key: it never sends a proof.
    expect(error.message).toBe('127.0.0.1:7000 did not prove it holds the cluster key: not a sheep of this cluster');
    expect(ran).toEqual([]);
    c.close();
  });

  it('refuses a proof made with the wrong key: the server answers one refusal and closes', async () => {
    const transport = new MemoryTransport();
    const { ran, refused } = await serve(transport, 7000, key);
    const hello = Buffer.concat(encodeFrame({ auth: 'hello', v: 1, nonce: random.bytes(32) }));
    const session = await raw(transport, 7000, [hello]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(session.frames[0]!.header['auth']).toBe('key');
    expect(session.frames[0]!.header['keyId']).toBe(keyIdOf(key));
    const second = await raw(transport, 7000, [hello, Buffer.concat(encodeFrame({ auth: 'proof', proof: random.bytes(32) }))]);
    await second.closed;
    expect(second.frames.map((f) => f.header['auth'])).toEqual(['key', 'refused']);
    expect(second.frames[1]!.header['message']).toBe('wrong cluster key');
    expect(refused).toContain('wrong cluster key');
    // Requests piggybacked on the wrong proof reached nothing.
    const third = await raw(transport, 7000, [
      hello,
      Buffer.concat(encodeFrame({ auth: 'proof', proof: random.bytes(32) })),
      Buffer.concat(encodeFrame({ id: 1, op: 'peer.remove', oid: '007c2b2500000000', epoch: 1, from: 'x' })),
    ]);
    await third.closed;
    expect(ran).toEqual([]);
  });

  it('answers a request sent without a handshake with an AUTH error and closes', async () => {
    const transport = new MemoryTransport();
    const { ran } = await serve(transport, 7000, key);
    const session = await raw(transport, 7000, [Buffer.concat(encodeFrame({ id: 7, op: 'cluster.shutdown' }))]);
    await session.closed;
    expect(session.frames.map((f) => f.header)).toEqual([
      { id: 7, ok: false, code: 'AUTH', message: 'authentication required: prove the cluster key first (a client of another version, or no client of this cluster)' },
    ]);
    expect(ran).toEqual([]);
  });

  it('does not pass a proof relayed from a sheep on another port', async () => {
    // Someone listening on 7000 (a port a sheep left free) relays to the real sheep on 7001: the
    // proof names 7001, the client dialled 7000.
    const transport = new MemoryTransport();
    const { ran } = await serve(transport, 7001, key);
    await transport.listen('127.0.0.1', 7000, (front: Duplex) => {
      void transport.connect('127.0.0.1', 7001).then((back) => {
        front.pipe(back);
        back.pipe(front);
      });
    });
    const c = client(transport, 7000, blindAuth(key));
    const error = await rejection(c.call('peer.remove', { oid, epoch: 1, from: 'x' }));
    expect(error.message).toBe('127.0.0.1:7000 did not prove it holds the cluster key: not a sheep of this cluster');
    expect(ran).toEqual([]);
    c.close();
  });

  it('closes a handshake that is too large or too slow', async () => {
    const transport = new MemoryTransport();
    const { refused, clock } = await serve(transport, 7000, key);
    const big = Buffer.alloc(8);
    big.writeUInt32BE(60_000, 0);
    big.writeUInt32BE(50_000, 4);
    const large = await raw(transport, 7000, [big, Buffer.alloc(5000)]);
    await large.closed;
    expect(refused).toContain('handshake too large');
    const slow = await raw(transport, 7000, [Buffer.alloc(3)]);
    await clock.advance(authHandshakeMs);
    await slow.closed;
    expect(refused).toContain(`no handshake within ${authHandshakeMs} ms`);
  });

  it('before the node has a key, serves only what format needs, and a client reconnects once it has one', async () => {
    const transport = new MemoryTransport();
    let serverKey: Buffer | undefined;
    const ran: string[] = [];
    const clock = new ManualClock();
    const table = new Proxy({}, { get: (_t, op: string) => async () => (ran.push(op), null) }) as Handlers;
    const handle = protocolHandler(table, clock, { warn: () => undefined });
    const auth = { port: 7000, key: () => serverKey, keyFile: undefined, random, clock, onRefused: () => undefined };
    await transport.listen('127.0.0.1', 7000, (stream) =>
      acceptSession(stream, auth, (session) =>
        serveConnection(stream, session === 'authenticated' ? handle : unkeyedHandler(handle, () => serverKey !== undefined, () => false), () => undefined, { clock, log: silent }),
      ),
    );
    const c = client(transport, 7000, blindAuth(key), clock);
    await c.call('cluster.info', {});
    const refusedWrite = await rejection(c.call('gw.write', { oid, offset: 0 }, Buffer.from('x')));
    expect([refusedWrite.code, refusedWrite.message]).toEqual(['NOT_FORMATTED', 'Waiting for cluster to be formatted']);
    expect(await rejection(c.call('peer.remove', { oid, epoch: 1, from: 'x' }))).toMatchObject({ code: 'NOT_FORMATTED' });
    expect(ran).toEqual(['cluster.info']);
    serverKey = key; // formatted: the old session serves nothing more, a new one proves the key
    await c.call('cluster.info', {}); // refused on the old stream, sent again on a new one
    expect(c.unkeyed).toBe(false);
    await c.call('gw.write', { oid, offset: 0 }, Buffer.from('x'));
    expect(ran).toEqual(['cluster.info', 'cluster.info', 'gw.write']);
    c.close();
  });
});

describe('key files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sheep-keys-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string, mode = 0o600) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text, { mode });
    fs.chmodSync(file, mode);
    return file;
  };

  it('reads one line of base64 of 32 bytes, and refuses anything else in one line', () => {
    expect(parseKey(formatKey(key))).toEqual(key);
    expect(readKeyFile(write('good.key', formatKey(key)))).toEqual(key);
    const refusal = (file: string) => {
      try {
        readKeyFile(file);
      } catch (error) {
        return (error as SdError).message;
      }
      return 'read';
    };
    const open = write('open.key', formatKey(key), 0o644);
    expect(refusal(open)).toBe(`key file ${open} is open to group or others (mode 644): chmod 600 it`);
    const short = write('short.key', key.subarray(0, 16).toString('base64'));
    expect(refusal(short)).toBe(`${short} is not a cluster key file (one line: the base64 of 32 random bytes)`);
    const large = write('large.key', 'A'.repeat(100_000));
    expect(refusal(large)).toBe(`${large} is not a cluster key file (one line: the base64 of 32 random bytes)`);
    expect(refusal(path.join(dir, 'missing.key'))).toBe(`cannot read key file ${path.join(dir, 'missing.key')}: no such file`);
    // A FIFO where the key should be: refused at once, not waited on.
    const fifo = path.join(dir, 'fifo.key');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    expect(refusal(fifo)).toBe(`key file ${fifo} is not a regular file`);
  });

  it('finds the key the sheep names by its id, and names what went wrong when it cannot', () => {
    const storeKey = write('cluster.key', formatKey(key));
    const elsewhere = write('other.key', formatKey(otherKey));
    const found = fileKeyAuth(undefined, random, elsewhere);
    expect(found.keyFor(keyIdOf(key), storeKey)).toEqual(key);
    expect(found.keyFor(keyIdOf(otherKey), storeKey)).toEqual(otherKey); // the default file's
    expect(() => found.keyFor('0123456789abcdef', storeKey)).toThrow(
      `no key for this cluster (key id 0123456789abcdef): ${storeKey} holds another cluster's key; ${elsewhere} holds another cluster's key; give the cluster key file with -k FILE`,
    );
    // A hint that is not a store's key file is not read.
    expect(() => fileKeyAuth(undefined, random, path.join(dir, 'none')).keyFor(keyIdOf(key), elsewhere)).toThrow(
      `no key for this cluster (key id ${keyIdOf(key)}); give the cluster key file with -k FILE`,
    );
    expect(() => fileKeyAuth(elsewhere, random).keyFor(keyIdOf(key), storeKey)).toThrow(
      `the key in ${elsewhere} is not this cluster's (key id ${keyIdOf(otherKey)}; the cluster's is ${keyIdOf(key)})`,
    );
  });
});

describe('keys when nodes join', () => {
  const node = (n: number) => ({ id: `10.0.0.${n}:7000`, addr: `10.0.0.${n}`, port: 7000, zone: n, vnodes: 128, nbdPort: 0 });
  const log = { warn() {}, info() {}, error() {} };
  const config = { createdMs: 1000, copies: 2, blockSizeShift: 22 };
  const epochs = [{ epoch: 1, timeSec: 1, nodes: [node(1)] }];
  const state = (k: Buffer | null, formatted = true): StoreState => ({
    config: formatted ? config : null,
    epochs: formatted ? epochs : [],
    registry: null,
    status: formatted ? 'running' : 'unformatted',
    recoveryEnabled: true,
    key: k ? k.toString('base64') : null,
  });
  async function master(k: Buffer | undefined, formatted = true): Promise<Group> {
    const disk = new MemoryDisk();
    const meta = new MetaStore('/s', disk);
    await meta.open();
    const group = new Group(node(1), meta, new ManualClock(), log, () => Buffer.alloc(32, 9));
    group.onJoin(node(1), [node(1)], { state: state(k ?? null, formatted), timeSec: 1 } as never);
    return group;
  }
  const handed = (verdict: ReturnType<Group['checkJoin']>) =>
    verdict.accept ? (verdict.payload as unknown as { state: StoreState }).state.key : `refused: ${verdict.reason}`;

  it('hands a keyless joiner the cluster key, and refuses one holding another key', async () => {
    const group = await master(key);
    expect(handed(group.checkJoin(node(2), state(null, false) as never))).toBe(key.toString('base64'));
    expect(handed(group.checkJoin(node(2), state(key) as never))).toBe(key.toString('base64'));
    expect(handed(group.checkJoin(node(2), state(otherKey) as never))).toBe(
      `refused: the node holds another cluster key (key id ${keyIdOf(otherKey)}; the cluster's is ${keyIdOf(key)})`,
    );
  });

  it('gives a formatted cluster without a key (an older store) a new one, once, and stores it', async () => {
    const group = await master(undefined);
    expect(group.key).toBeUndefined();
    expect(handed(group.checkJoin(node(2), state(null) as never))).toBe(Buffer.alloc(32, 9).toString('base64'));
    const unformatted = await master(undefined, false);
    expect(handed(unformatted.checkJoin(node(2), state(null, false) as never))).toBeNull();
  });
});

describe('a simulated cluster runs with a key', () => {
  it('every node holds the one key format made, and peers prove it', async () => {
    const c = new SimTestCluster({ hosts: 3, seed: 5 });
    await c.start(0, 1, 2);
    await c.waitForMembers();
    expect([0, 1, 2].map((i) => c.sheep(i).group.key)).toEqual([undefined, undefined, undefined]);
    await c.format(0, 2);
    await c.until('every node has the key', () => [0, 1, 2].every((i) => c.sheep(i).group.key !== undefined));
    const keys = [0, 1, 2].map((i) => c.sheep(i).group.key!.toString('hex'));
    expect(new Set(keys).size).toBe(1);
    // Writes with 2 copies go through peer requests, which are authenticated sessions.
    await c.create(1, 'v', 8 << 20);
    await c.write(2, 'v', 0, Buffer.alloc(1 << 20, 3));
    expect(await c.readMd5(0, 'v', 1 << 20)).toBe(await c.readMd5(1, 'v', 1 << 20));
  });
});
