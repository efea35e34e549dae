// A read whose copies are all under recovery waits for one to be verified, for a bounded time.
// The bound once counted only the pauses between passes, not the passes: with one replica
// answering "being recovered" and another unreachable (each pass then waits out a timeout), a
// read through a cut-off node ran for more than half an hour of simulated time (seed 10 of the
// full fault mix, 531 steps, before the fix).
import { describe, expect, test } from 'vitest';
import type { NodeInfo } from '../src/cluster/driver.js';
import { SdError } from '../src/engine/errors.js';
import { asVid, dataOid, type Oid } from '../src/engine/oid.js';
import { Gateway } from '../src/sheep/gateway.js';
import { ManualClock } from './support/manual-clock.js';

const node = (id: string): NodeInfo => ({ id, address: id, port: 7000, zone: 1, vnodes: 128 }) as unknown as NodeInfo;
const recovering = node('10.0.0.1:7000');
const unreachable = node('10.0.0.2:7000');
const self = node('10.0.0.3:7000');
const timeoutMs = 20_000;

function gatewayOver(clock: ManualClock, answered: { n: number }): Gateway {
  const group = { epoch: 1, self, members: [recovering, unreachable, self], out: false, requireRunning() {}, coordinator: { admit: async () => undefined } };
  const placement = {
    nodes: (_oid: Oid) => [recovering, unreachable],
    checkRange() {},
    objectSizeBytes: () => 4 << 20,
    contentBytes: () => 4 << 20,
    ecPolicy: () => undefined,
  };
  const peers = {
    async call(to: NodeInfo) {
      answered.n += 1;
      if (to.id === recovering.id) throw new SdError('BUSY', 'copy is being recovered');
      await clock.sleep(timeoutMs);
      throw new SdError('NETWORK', `${to.id} did not answer peer.read in ${timeoutMs} ms`);
    },
  };
  return new Gateway(group as never, {} as never, peers as never, clock, placement as never);
}

describe('a read of copies under recovery', () => {
  test('gives up within its bound of the clock, the passes included', async () => {
    const clock = new ManualClock();
    const answered = { n: 0 };
    const startMs = clock.nowMs();
    let outcome: { error: unknown } | undefined;
    void gatewayOver(clock, answered)
      .read(dataOid(asVid(7), 0), 0, 4096)
      .then(
        () => (outcome = { error: undefined }),
        (error: unknown) => (outcome = { error }),
      );
    for (let i = 0; i < 10_000 && outcome === undefined; i++) await clock.advance(1000);
    expect(outcome, 'the read never settled').toBeDefined();
    expect((outcome!.error as SdError).code).toBe('NETWORK');
    // The recovering-copy wait is 10 s: one pass more at most, never the 100 passes of before.
    expect(clock.nowMs() - startMs).toBeLessThanOrEqual(10_000 + 2 * timeoutMs + 1000);
    expect(answered.n).toBeLessThan(10);
  });
});
