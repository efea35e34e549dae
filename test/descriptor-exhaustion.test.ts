// One sheep out of descriptors (issue #12 item 3), on real processes: node 1 runs under
// `ulimit -n 256` and is sent (limit + 200) idle connections. Its sheep port serves at most its
// cap (derived from the limit) and refuses the rest with one line; when its descriptors do run
// out (idle NBD sessions, which this cap does not cover), its liveness checks cannot read /proc
// and must keep every member rather than report them all left. Ports 8010-8019.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localLeaveDetectMsMax, malformedLogBurst, rpcConnectionsCap } from '../src/engine/limits.js';
import { FrameDecoder } from '../src/rpc/frame.js';
import { Cluster, md5, pattern, poll, sleep } from './support/cluster.js';

const openFiles = 256;
const flood = openFiles + 200;
const nbdPort = 8019;
const data = pattern(4 * 1024 * 1024, 3);
let c: Cluster;

beforeAll(async () => {
  c = new Cluster({
    basePort: 8010,
    prefix: 'sheep-fds-',
    openFiles: (i) => (i === 1 ? openFiles : undefined),
    sheepArgs: (i) => (i === 1 ? ['--nbd', `127.0.0.1:${nbdPort}`] : []),
  });
  try {
    await c.startAll([0, 1, 2]);
    await c.dogOk(['cluster', 'format', '-c', '3']);
    await c.dogOk(['vdi', 'create', 'v', String(data.length)]);
    await c.dogOk(['vdi', 'write', 'v'], { input: data });
  } catch (error) {
    await c.stop();
    throw error;
  }
});

afterAll(async () => {
  await c.stop();
});

interface Held {
  sockets: net.Socket[];
  /** Per socket: the bytes it received, and whether it was closed by the other side. */
  received: Buffer[];
  closed: boolean[];
}

/** Opens `count` connections at once and keeps them idle; failures count as closed. */
async function hold(port: number, count: number): Promise<Held> {
  const held: Held = { sockets: [], received: [], closed: [] };
  await Promise.all(
    Array.from({ length: count }, (_, k) => {
      held.received[k] = Buffer.alloc(0);
      held.closed[k] = false;
      return new Promise<void>((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port });
        held.sockets.push(socket);
        socket.on('data', (chunk: Buffer) => (held.received[k] = Buffer.concat([held.received[k]!, chunk])));
        socket.on('close', () => {
          held.closed[k] = true;
          resolve();
        });
        socket.on('error', () => undefined);
        socket.once('connect', () => resolve());
      });
    }),
  );
  return held;
}

function release(held: Held): void {
  for (const socket of held.sockets) socket.destroy();
}

/** Every node is running and lists the three nodes; the epoch never moved. */
async function expectIntact(): Promise<void> {
  expect(c.live()).toEqual([0, 1, 2]);
  for (const i of [0, 2]) {
    const ids = await c.nodeIds(i);
    console.log(`node ${i} lists ${ids.length} members: ${ids.join(' ')}`);
    expect(ids).toEqual([0, 1, 2].map((n) => c.nodeId(n)));
    expect((await c.epochHistory(i)).length).toBe(1);
  }
}

/** Lines of node 1's log with this message. */
function logLines(message: string): string[] {
  return c.log(1).split('\n').filter((line) => line.includes(`"msg":"${message}"`));
}

describe('descriptor exhaustion on one sheep', () => {
  it('caps connections on the sheep port below the limit and refuses the rest with one line', async () => {
    const cap = rpcConnectionsCap(openFiles);
    const held = await hold(c.port(1), flood);
    // Longer than the driver's failure timeout: a member wrongly reported left would be by now.
    await sleep(2 * localLeaveDetectMsMax);
    await expectIntact();
    const refusal = `${c.nodeId(1)} refused the connection: too many connections (${cap}); try again later`;
    const dogged = await c.dog(['node', 'list'], { port: c.port(1) });
    expect({ code: dogged.code, stderr: dogged.stderr }).toEqual({ code: 1, stderr: `${refusal}\n` });
    const refusedWithMessage = held.received.filter((bytes) => {
      const frames = new FrameDecoder().push(bytes);
      return frames[0]?.header['id'] === 0 && frames[0]?.header['code'] === 'BUSY' && frames[0]?.header['message'] === `too many connections (${cap}); try again later`;
    }).length;
    const open = held.closed.filter((closed) => !closed).length;
    console.log(`${flood} connections to a sheep with ulimit -n ${openFiles}: ${open} held (cap ${cap}), ${refusedWithMessage} refused with the message`);
    expect(open).toBeLessThanOrEqual(cap);
    expect(refusedWithMessage).toBeGreaterThan(0);
    release(held);
    await poll('node 1 to serve again', async () => (await c.dog(['node', 'list'], { port: c.port(1) })).code === 0, 10_000);
    expect(await c.readMd5(1, 'v')).toBe(md5(data));
  });

  it('keeps every member when its descriptors run out (/proc reads fail with EMFILE)', async () => {
    const held = await hold(nbdPort, flood);
    await sleep(2 * localLeaveDetectMsMax);
    await expectIntact();
    const undecided = logLines('local driver: cannot tell whether a member lives; keeping it');
    console.log(`${flood} NBD sessions on a sheep with ulimit -n ${openFiles}: ${undecided.length} "cannot tell" warnings`);
    expect(undecided.length).toBeGreaterThan(0); // the descriptors did run out
    expect(undecided[0]).toMatch(/EMFILE/);
    expect(undecided.length).toBeLessThanOrEqual(malformedLogBurst); // rate-limited: a burst, then once per 10 s
    release(held);
    await poll('node 1 to serve again', async () => (await c.dog(['node', 'list'], { port: c.port(1) })).code === 0, 10_000);
    await expectIntact();
    expect(await c.readMd5(1, 'v')).toBe(md5(data));
  });
});
