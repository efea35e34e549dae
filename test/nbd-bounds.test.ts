// NBD connection slots (issue 12, item 7): sessions are capped with a refusal that names the
// limit, a handshake must finish in time, a half-sent request must complete in time, and an idle
// session is closed only when an idle timeout is set (never a busy one). Real sockets throughout:
// a real sheep for the cap, an in-process server with short deadlines for the timeouts.
// Ports 8110-8119 belong to this file (8110: the sheep, 8111: its NBD port, 8115-8119: servers).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNbdServer, type NbdServer } from '../src/nbd/index.js';
import { poll, run, sleep, startCluster, type Cluster } from './support/cluster.js';
import { MemoryVolumeProvider } from './support/memory-volume.js';

const basePort = 8110;
const nbdPort = 8111;

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.on('error', () => undefined);
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

/** Bytes as they come: `take(n)` resolves with the next n. */
function bytes(socket: net.Socket): (n: number) => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  const waiters: Array<() => void> = [];
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    waiters.splice(0).forEach((wake) => wake());
  });
  return async (n) => {
    while (buffered.length < n) {
      if (socket.destroyed) throw new Error('closed');
      await new Promise<void>((wake) => {
        waiters.push(wake);
        socket.once('close', wake);
      });
    }
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  };
}

/** A session in transmission phase through NBD_OPT_EXPORT_NAME (fixed newstyle, no zeroes). */
async function session(port: number, exportName: string): Promise<net.Socket> {
  const socket = await connect(port);
  socket.on('error', () => undefined);
  const take = bytes(socket);
  await take(18);
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(1 | 2);
  const name = Buffer.from(exportName);
  const option = Buffer.alloc(16);
  Buffer.from('IHAVEOPT').copy(option);
  option.writeUInt32BE(1, 8);
  option.writeUInt32BE(name.length, 12);
  socket.write(Buffer.concat([flags, option, name]));
  await take(10);
  return socket;
}

/** An NBD_CMD_READ of 512 bytes at 0 (header only; the reply is not awaited). */
function readRequest(handle: number): Buffer {
  const request = Buffer.alloc(28);
  request.writeUInt32BE(0x25609513, 0);
  request.writeUInt16BE(0, 6);
  request.writeBigUInt64BE(BigInt(handle), 8);
  request.writeUInt32BE(512, 24);
  return request;
}

describe('NBD sessions of a real sheep', () => {
  let c: Cluster;

  beforeAll(async () => {
    c = await startCluster({ basePort, nodes: 1, copies: 1, prefix: 'sheep-nbd-bounds-', sheepArgs: () => ['--nbd', String(nbdPort)] });
    await c.dogOk(['vdi', 'create', 'v', '8M']);
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('refuses a session past the cap with a message naming it, and lets one in when a slot frees', async () => {
    const sessions: net.Socket[] = [];
    for (let i = 0; i < 1024; i++) sessions.push(await session(nbdPort, 'v'));
    // qemu prints the server's message (nbdinfo only a generic errno).
    const refused = await run('qemu-img', ['info', `nbd://127.0.0.1:${nbdPort}/v`], { timeoutMs: 30_000 });
    console.log(`with 1024 idle sessions, qemu-img info exits ${refused.code}: ${refused.stderr.trim()}`);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('too many NBD sessions (1024)');
    sessions[0]!.destroy();
    await poll('nbdinfo to get in', async () => (await run('nbdinfo', ['--size', `nbd://127.0.0.1:${nbdPort}/v`], { timeoutMs: 30_000 })).stdout.trim() === '8388608', 10_000, 200);
    for (const socket of sessions) socket.destroy();
  }, 120_000);
});

describe('NBD deadlines on a real socket', () => {
  let server: NbdServer;

  beforeAll(async () => {
    const provider = new MemoryVolumeProvider();
    provider.createVdi('v', 1024 * 1024);
    server = await startNbdServer({
      host: '127.0.0.1',
      port: 8115,
      provider,
      limits: { handshakeTimeoutMs: 1500, requestReadTimeoutMs: 1500, idleTimeoutMs: 2000 },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('closes a handshake that trickles in a byte a second', async () => {
    const socket = await connect(8115);
    const gone = closed(socket);
    const startMs = Date.now();
    const drip = setInterval(() => socket.destroyed || socket.write(Buffer.from([0])), 500);
    await Promise.race([gone, sleep(10_000)]);
    clearInterval(drip);
    expect(socket.destroyed).toBe(true);
    expect(Date.now() - startMs).toBeGreaterThanOrEqual(1500);
  });

  it('closes a session whose request stops halfway, header or payload', async () => {
    const half = await session(8115, 'v');
    half.write(readRequest(1).subarray(0, 14));
    const write = await session(8115, 'v');
    const header = readRequest(2);
    header.writeUInt16BE(1, 6); // NBD_CMD_WRITE of 512 bytes, of which 100 come
    write.write(Buffer.concat([header, Buffer.alloc(100)]));
    const startMs = Date.now();
    await Promise.race([Promise.all([closed(half), closed(write)]), sleep(10_000)]);
    expect([half.destroyed, write.destroyed]).toEqual([true, true]);
    expect(Date.now() - startMs).toBeGreaterThanOrEqual(1500);
  });

  it('closes an idle session once an idle timeout is set, never a busy one', async () => {
    const idle = await session(8115, 'v');
    const busy = await session(8115, 'v');
    const replies = bytes(busy);
    const idleGone = closed(idle);
    // Busy: a request every 500 ms for 5 s, each answered (simple reply header and 512 bytes).
    for (let handle = 1; handle <= 10; handle++) {
      busy.write(readRequest(handle));
      await replies(16 + 512);
      await sleep(500);
    }
    await Promise.race([idleGone, sleep(1000)]);
    expect(idle.destroyed).toBe(true);
    expect(busy.destroyed).toBe(false);
    busy.destroy();
  });
});
