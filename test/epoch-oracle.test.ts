// The simulator's epoch oracle (src/sim/epoch-oracle.ts) on hand-made frames: it must flag a
// peer request that reached a newer receiver and was answered ok, and nothing else.
import { describe, expect, test } from 'vitest';
import { encodeFrame } from '../src/rpc/frame.js';
import { EpochOracle } from '../src/sim/epoch-oracle.js';

function bytes(header: object, payload?: Buffer): Buffer {
  return Buffer.concat(encodeFrame(header, payload));
}

/** Feeds `data` in pieces of `size` bytes, as the network delivers chunks. */
function feed(oracle: EpochOracle, connection: number, toServer: boolean, host: string, data: Buffer, size: number): void {
  for (let at = 0; at < data.length; at += size) oracle.onChunk(connection, toServer, host, data.subarray(at, at + size));
}

describe('epoch oracle', () => {
  const write = (epoch: number, id = 1) => bytes({ id, op: 'peer.write', epoch, from: 'n1', oid: 5n }, Buffer.alloc(70_000, 1));

  test('a request from an older epoch that is answered ok is a violation, cut at any chunk size', () => {
    for (const size of [1, 7, 4096, 1 << 20]) {
      const oracle = new EpochOracle(() => 4);
      feed(oracle, 1, true, 'n2', write(3), size);
      feed(oracle, 1, false, 'n1', bytes({ id: 1, ok: true, value: null }), size);
      expect(oracle.violations, `chunks of ${size}`).toEqual(['peer.write from n1 at epoch 3 was served by n2, already at epoch 4']);
    }
  });

  test('a refusal, a request of the same epoch, a client request and a closed connection are fine', () => {
    const oracle = new EpochOracle(() => 4);
    feed(oracle, 1, true, 'n2', Buffer.concat([write(3, 1), write(4, 2), bytes({ id: 3, op: 'gw.read', oid: 1n })]), 100);
    feed(oracle, 1, false, 'n1', bytes({ id: 1, ok: false, code: 'OLD_EPOCH', message: 'old', epoch: 4 }), 100);
    feed(oracle, 1, false, 'n1', Buffer.concat([bytes({ id: 2, ok: true, value: null }), bytes({ id: 3, ok: true, value: null })]), 100);
    feed(oracle, 2, true, 'n2', write(2, 9), 100);
    oracle.onClose(2);
    feed(oracle, 2, false, 'n1', bytes({ id: 9, ok: true, value: null }), 100);
    expect(oracle.violations).toEqual([]);
  });
});
