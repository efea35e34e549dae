// The simulated network: byte streams between named hosts on simulated time, with delay,
// partitions, resets and crashes driven by a seed.
import type { Duplex } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { seededRandom } from '../src/io/random.js';
import { SimNetwork, quietNetwork } from '../src/sim/network.js';
import { Scheduler } from '../src/sim/scheduler.js';

function world(seed = 1, faults = quietNetwork) {
  const clock = new Scheduler();
  const network = new SimNetwork(clock, seededRandom(seed), faults);
  return { clock, network };
}

/** An echo server on host:port that upper-cases what it receives. */
async function echo(network: SimNetwork, host: string, port = 7000): Promise<void> {
  await network.host(host).listen('0.0.0.0', port, (stream) => {
    stream.on('data', (chunk: Buffer) => stream.write(chunk.toString().toUpperCase()));
    stream.on('error', () => undefined);
  });
}

function collect(stream: Duplex): { text: () => string; events: string[] } {
  let text = '';
  const events: string[] = [];
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  stream.on('error', (error: NodeJS.ErrnoException) => events.push(`error ${error.code}`));
  stream.on('close', () => events.push('close'));
  return { text: () => text, events };
}

describe('simulated network', () => {
  test('bytes arrive in order after the delay; a connect to nobody is refused', async () => {
    const { clock, network } = world();
    await echo(network, 'b');
    const connecting = network.host('a').connect('b', 7000);
    const connected = await clock.settle(connecting, 1000);
    expect(connected.done).toBe(true);
    const stream = (connected as { value: Duplex }).value;
    const got = collect(stream);
    for (const word of ['one ', 'two ', 'three']) stream.write(word);
    await clock.runFor(100);
    expect(got.text()).toBe('ONE TWO THREE');
    const refused = await clock.settle(network.host('a').connect('c', 7000), 1000);
    expect(refused).toMatchObject({ done: false, error: { code: 'ECONNREFUSED' } });
  });

  test('a partition stalls a connection until it heals; a connect across it fails in bounded time', async () => {
    const { clock, network } = world(3);
    await echo(network, 'b');
    const stream = ((await clock.settle(network.host('a').connect('b', 7000), 1000)) as { value: Duplex }).value;
    const got = collect(stream);
    network.cut(['a'], ['b', 'c']);
    stream.write('held ');
    await clock.runFor(10_000);
    expect(got.text()).toBe('');
    const startMs = clock.nowMs();
    const across = await clock.settle(network.host('a').connect('b', 7000), 60_000);
    expect(across).toMatchObject({ done: false, error: { code: 'ETIMEDOUT' } });
    expect(clock.nowMs() - startMs).toBeLessThanOrEqual(quietNetwork.connectHangMsMax + 1);
    network.heal();
    stream.write('then more');
    await clock.runFor(100);
    expect(got.text()).toBe('HELD THEN MORE');
  });

  test('a crash resets the host connections and fences its old transport', async () => {
    const { clock, network } = world();
    const oldB = network.host('b');
    const serverEvents: string[] = [];
    await oldB.listen('b', 7000, (s) => {
      s.on('error', () => serverEvents.push('error'));
      s.on('close', () => serverEvents.push('close'));
    });
    const stream = ((await clock.settle(network.host('a').connect('b', 7000), 1000)) as { value: Duplex }).value;
    const got = collect(stream);
    network.crashHost('b');
    await clock.runFor(10);
    expect(got.events).toEqual(['error ECONNRESET', 'close']);
    expect(serverEvents).toEqual(['close']); // the crashed side hears no error
    await expect(oldB.listen('b', 7000, () => undefined)).rejects.toMatchObject({ code: 'ENETDOWN' });
    const refused = await clock.settle(network.host('a').connect('b', 7000), 1000);
    expect(refused).toMatchObject({ done: false, error: { code: 'ECONNREFUSED' } });
    await network.host('b').listen('b', 7000, () => undefined); // the next incarnation
  });

  test('a clean end reaches the peer after the bytes before it', async () => {
    const { clock, network } = world();
    let serverText = '';
    let serverEnded = false;
    await network.host('b').listen('b', 7000, (s) => {
      s.on('data', (c: Buffer) => (serverText += c.toString()));
      s.on('end', () => (serverEnded = true));
    });
    const stream = ((await clock.settle(network.host('a').connect('b', 7000), 1000)) as { value: Duplex }).value;
    stream.on('data', () => undefined);
    stream.end('last words');
    await clock.runFor(100);
    expect(serverText).toBe('last words');
    expect(serverEnded).toBe(true);
    expect(network.openConnections).toBe(0);
  });

  test('injected resets follow the seed: the same seed resets after the same chunks', async () => {
    async function run(seed: number): Promise<string> {
      const { clock, network } = world(seed, { ...quietNetwork, resetAfterChunk: 0.05 });
      await echo(network, 'b');
      let log = '';
      for (let connection = 0; connection < 20; connection++) {
        const result = await clock.settle(network.host('a').connect('b', 7000), 1000);
        if (!result.done) continue;
        const got = collect(result.value);
        for (let i = 0; i < 10; i++) result.value.write(`${i}`);
        await clock.runFor(50);
        log += `${got.text()}${got.events.join(',')}|`;
      }
      return log;
    }
    const first = await run(11);
    expect(await run(11)).toBe(first);
    expect(first).toContain('ECONNRESET');
    expect(await run(12)).not.toBe(first);
  });
});
