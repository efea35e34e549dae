// The sheep port under abuse, against a real sheep (issue 12, items 6-9): memory it holds for
// requests and replies is bounded and given back (its RSS from /proc), a frame must arrive in
// time, the connection count is capped with a clear refusal, object I/O outside an object or a
// VDI is refused with a stable code, and a malformed op is a rate-limited warning.
// Ports 8100-8109 belong to this file (8100: the sheep, 8105-8109: in-process servers).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SdError } from '../src/engine/errors.js';
import { asVid, dataOid, inodeOid, oidHex, type Oid } from '../src/engine/oid.js';
import { systemClock } from '../src/io/clock.js';
import { silentLog } from '../src/io/log.js';
import { tcpTransport } from '../src/io/transport.js';
import { readKeyFile } from '../src/io/key-file.js';
import { systemRandom } from '../src/io/random.js';
import { connectSession } from '../src/rpc/auth.js';
import { RpcClient } from '../src/rpc/client.js';
import { encodeFrame } from '../src/rpc/frame.js';
import { protocolHandler, RpcServer, type Handlers } from '../src/rpc/server.js';
import { poll, sleep, startCluster, type Cluster } from './support/cluster.js';
import { dataOffset } from '../src/store/block-sums.js';

const MiB = 1024 * 1024;
const objectBytes = 4 * MiB;
const basePort = 8100;

function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) / 1024;
}

/** The highest RSS seen over `ms`. */
async function peakRssMiB(pid: number, ms: number): Promise<number> {
  let peak = rssMiB(pid);
  for (const end = Date.now() + ms; Date.now() < end; ) {
    await sleep(100);
    peak = Math.max(peak, rssMiB(pid));
  }
  return peak;
}

/** A raw socket; with `key`, one that has proved the cluster key first (a real sheep wants it). */
async function connect(port: number, key?: Buffer): Promise<net.Socket> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const opened = net.connect({ host: '127.0.0.1', port }, () => resolve(opened));
    opened.once('error', reject);
  });
  if (key) await connectSession(socket, `127.0.0.1:${port}`, port, { random: systemRandom, keyFor: () => key });
  return socket;
}

/** Resolves when the other side closes the socket. */
function closedByPeer(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.on('error', () => undefined);
    if (socket.destroyed) resolve();
    socket.once('close', () => resolve());
  });
}

function send(socket: net.Socket, header: object, payload?: Buffer): void {
  for (const piece of encodeFrame(header, payload)) socket.write(piece);
}

async function rejection(promise: Promise<unknown>): Promise<SdError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  if (!(error instanceof SdError)) throw new Error(`expected an SdError, got ${String(error)}`);
  return error;
}

describe('the sheep port of a real sheep', () => {
  let c: Cluster;
  let pid: number;
  let vid: number;
  let client: RpcClient;
  let key: Buffer;
  const object = (index: number): Oid => dataOid(asVid(vid), index);

  beforeAll(async () => {
    c = await startCluster({ basePort, nodes: 1, copies: 1, prefix: 'sheep-bounds-' });
    pid = c.pid(0)!;
    await c.dogOk(['vdi', 'create', 'v', '8M']);
    vid = parseInt((await c.dogOk(['vdi', 'list', '-r'])).out.split(' ')[7]!, 16);
    await c.dogOk(['vdi', 'write', 'v', '0', String(objectBytes)], { input: Buffer.alloc(objectBytes, 7) });
    key = readKeyFile(path.join(c.storeDir(0), 'cluster.key'));
    client = new RpcClient({ transport: tcpTransport, clock: systemClock, host: '127.0.0.1', port: basePort, auth: { random: systemRandom, keyFor: () => key } });
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await c?.stop();
  });

  it('refuses object I/O outside an object or a VDI with a stable code', async () => {
    // Reads past an object's end are refused, not zero-filled; so is a read longer than the object.
    expect(await client.call('gw.read', { oid: object(0), offset: objectBytes - 2, length: 2 })).toEqual(Buffer.alloc(2, 7));
    const pastEnd = await rejection(client.call('gw.read', { oid: object(0), offset: objectBytes - 2, length: 4 }));
    expect([pastEnd.code, pastEnd.message]).toEqual(['OUT_OF_RANGE', `bytes ${objectBytes - 2}+4 are past the end of object ${oidHex(object(0))} (${objectBytes} bytes)`]);
    expect((await rejection(client.call('gw.read', { oid: object(0), offset: 0, length: 64 * MiB }))).code).toBe('OUT_OF_RANGE');
    // An 8 MiB VDI has objects 0 and 1 and one table chunk.
    const beyond = await rejection(client.call('gw.write', { oid: object(2), offset: 0, create: true }, Buffer.from('x')));
    expect([beyond.code, beyond.message]).toEqual(['OUT_OF_RANGE', 'object 2 is past the end of VDI v (2 objects)']);
    expect((await rejection(client.call('gw.write', { oid: inodeOid(asVid(vid), 1), offset: 0, create: true }, Buffer.from('x')))).code).toBe('OUT_OF_RANGE');
    const noVdi = await rejection(client.call('gw.write', { oid: dataOid(asVid(0x123456), 0), offset: 0, create: true }, Buffer.from('x')));
    expect([noVdi.code, noVdi.message]).toEqual(['NO_VDI', 'no VDI with id 123456']);
    expect((await rejection(client.call('gw.read', { oid: dataOid(asVid(0x123456), 0), offset: 0, length: 1 }))).code).toBe('NO_VDI');
    // A peer write cannot choose the object's size: the receiver knows it (a `size` is ignored).
    const peer = { epoch: 1, from: '127.0.0.1:1' };
    const raw = client as unknown as { call(op: string, fields: object, payload: Buffer): Promise<unknown> };
    await raw.call('peer.write', { ...peer, oid: object(1), offset: 0, create: true, size: 64 * MiB }, Buffer.from('y'));
    expect(fs.statSync(path.join(c.storeDir(0), 'obj', oidHex(object(1)))).size).toBe(dataOffset + objectBytes);
    const peerPast = await rejection(raw.call('peer.write', { ...peer, oid: object(1), offset: objectBytes, create: true }, Buffer.from('y')));
    expect(peerPast.code).toBe('OUT_OF_RANGE');
    expect((await rejection(client.call('peer.read', { ...peer, oid: object(1), offset: objectBytes - 1, length: 2 }))).code).toBe('OUT_OF_RANGE');
    // What was in range is intact, and dog reads it.
    expect((await c.dogOk(['vdi', 'read', 'v', '0', '4'])).stdout).toEqual(Buffer.alloc(4, 7));
  });

  it('logs an op sent as a map as a rate-limited warning, never as a bug with a stack', async () => {
    const raw = client as unknown as { call(op: unknown, fields: object): Promise<unknown> };
    for (let i = 0; i < 200; i++) expect((await rejection(raw.call({ toString: i }, {}))).code).toBe('PROTOCOL');
    expect(await client.call('ping', {})).toBe('pong');
    await poll('the warnings in the log', () => c.log(0).includes('unknown operation (a map)'), 5000);
    const lines = c.log(0).split('\n').filter((line) => line.includes('unknown operation (a map)'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(5);
    expect(c.log(0)).not.toMatch(/bug while serving|"level":50/);
  });

  async function abuse(what: string, start: () => Promise<net.Socket[]>): Promise<void> {
    const baseline = rssMiB(pid);
    const sockets = await start();
    const peak = await peakRssMiB(pid, 4000);
    expect(await client.call('ping', {}), `${what}: the sheep still answers`).toBe('pong');
    for (const socket of sockets) socket.destroy();
    const after = await poll(`${what}: RSS back near ${baseline.toFixed(0)} MiB`, () => {
      const now = rssMiB(pid);
      return now < baseline + 128 ? now : undefined;
    }, 30_000, 250);
    console.log(`${what}: RSS ${baseline.toFixed(0)} MiB before, ${peak.toFixed(0)} MiB at most during, ${after.toFixed(0)} MiB after`);
    expect(peak - baseline, `${what}: growth`).toBeLessThan(256);
  }

  it('holds bounded memory for replies nobody reads, and gives it back after', async () => {
    await abuse('24 connections x 16 unread 4 MiB reads', async () => {
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 24; i++) {
        const socket = await connect(basePort, key);
        socket.pause();
        socket.on('error', () => undefined);
        for (let id = 1; id <= 16; id++) send(socket, { id, op: 'gw.read', oid: object(0), offset: 0, length: objectBytes });
        sockets.push(socket);
      }
      return sockets;
    });
    await abuse('4000 unread 256 KiB reads on one connection', async () => {
      const socket = await connect(basePort, key);
      socket.pause();
      socket.on('error', () => undefined);
      for (let id = 1; id <= 4000; id++) send(socket, { id, op: 'gw.read', oid: object(0), offset: 0, length: 256 * 1024 });
      return [socket];
    });
  }, 120_000);

  it('holds bounded memory for frames that never complete, and gives it back after', async () => {
    await abuse('16 connections each holding a 64 MiB write frame short of its end', async () => {
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 16; i++) {
        const socket = await connect(basePort, key);
        socket.on('error', () => undefined);
        const [prefix, header, payload] = encodeFrame({ id: 1, op: 'gw.write', oid: object(0), offset: 0 }, Buffer.alloc(64 * MiB));
        socket.write(prefix!);
        socket.write(header!);
        socket.write(payload!.subarray(0, payload!.length - 100));
        sockets.push(socket);
      }
      return sockets;
    });
  }, 120_000);

  it('closes a connection whose frame does not arrive in time: truncated, or a byte at a time', async () => {
    const truncated = await connect(basePort, key);
    const [prefix, header] = encodeFrame({ id: 1, op: 'gw.write', oid: object(0), offset: 0 }, Buffer.alloc(1000));
    truncated.write(Buffer.concat([prefix!, header!, Buffer.alloc(10)]));
    const trickle = await connect(basePort, key);
    const frame = Buffer.concat(encodeFrame({ id: 1, op: 'ping' }));
    let at = 0;
    const drip = setInterval(() => {
      if (!trickle.destroyed && at < frame.length - 1) trickle.write(frame.subarray(at, ++at));
    }, 1000);
    const startMs = Date.now();
    try {
      await poll('the sheep to close both', async () => truncated.destroyed && trickle.destroyed, 30_000, 250);
    } finally {
      clearInterval(drip);
    }
    const tookMs = Date.now() - startMs;
    console.log(`truncated and 1-byte-a-second frames closed after ${tookMs} ms`);
    expect(tookMs).toBeGreaterThanOrEqual(14_000);
    expect(await client.call('ping', {})).toBe('pong');
  }, 60_000);
});

describe('an rpc server on a real socket', () => {
  const handlers = { ping: async () => 'pong' } as unknown as Handlers;

  async function listen(port: number, limits: ConstructorParameters<typeof RpcServer>[1]['limits']) {
    const server = new RpcServer(protocolHandler(handlers, systemClock, silentLog), { clock: systemClock, log: silentLog, onBug: () => undefined, limits });
    const listener = await tcpTransport.listen('127.0.0.1', port, (stream, remote) => server.accept(stream, remote));
    return { server, listener };
  }

  it('caps connections with a clear refusal, and lets a new client in once one leaves', async () => {
    const { server, listener } = await listen(basePort + 5, { connectionsMax: 4 });
    const holders = await Promise.all([0, 1, 2, 3].map(() => connect(basePort + 5)));
    await poll('4 connections', () => server.connectionCount === 4, 5000, 20);
    const late = new RpcClient({ transport: tcpTransport, clock: systemClock, host: '127.0.0.1', port: basePort + 5 });
    const refused = await rejection(late.call('ping', {}));
    expect([refused.code, refused.message]).toEqual(['BUSY', `127.0.0.1:${basePort + 5} refused the connection: too many connections (4); try again later`]);
    holders[0]!.destroy();
    await poll('a free slot', () => server.connectionCount === 3, 5000, 20);
    expect(await late.call('ping', {})).toBe('pong');
    late.close();
    for (const socket of holders) socket.destroy();
    await listener.close();
  });

  it('closes an idle connection, never one that is busy', async () => {
    const { server, listener } = await listen(basePort + 6, { idleTimeoutMs: 1000 });
    const idle = await connect(basePort + 6);
    const busy = new RpcClient({ transport: tcpTransport, clock: systemClock, host: '127.0.0.1', port: basePort + 6 });
    const startMs = Date.now();
    await closedByPeer(idle);
    expect(Date.now() - startMs).toBeGreaterThanOrEqual(1000);
    // A client that keeps asking, more often than the idle timeout, keeps its connection.
    for (let i = 0; i < 10; i++) {
      expect(await busy.call('ping', {})).toBe('pong');
      await sleep(300);
    }
    expect(server.connectionCount).toBe(1);
    busy.close();
    await listener.close();
  });
});
