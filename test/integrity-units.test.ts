// The pure parts of check and repair and of the metrics: the vote, the lines dog prints, the
// progress bar, the Prometheus text.
import { describe, expect, test } from 'vitest';
import { describeCheck, progressLine } from '../src/cli/check.js';
import { asVid, dataOid } from '../src/engine/oid.js';
import { SdError } from '../src/engine/errors.js';
import type { NodeInfo } from '../src/cluster/driver.js';
import { instrument, Metrics, renderMetrics } from '../src/sheep/metrics.js';
import { vote } from '../src/sheep/object-check.js';
import type { Handlers } from '../src/rpc/server.js';

const node = (id: string): NodeInfo => ({ id, addr: '127.0.0.1', port: 1, zone: 0, vnodes: 1, nbdPort: 0 });
const [a, b, c] = [node('a'), node('b'), node('c')];
const oid = dataOid(asVid(0x10), 3);

describe('vote', () => {
  test('a majority of the passing copies wins; checksums say when they alone decided', () => {
    expect(vote([{ node: a, sum: 'x' }, { node: b, sum: 'x' }, { node: c, sum: 'y' }])).toEqual({ sum: 'x', onlyVerified: false });
    expect(vote([{ node: a, sum: 'x' }, { node: b, state: 'missing' }, { node: c, state: 'missing' }])).toEqual({ sum: 'x', onlyVerified: false });
    // One damaged: a vote of all three (the damaged one a differing copy) still had a majority.
    expect(vote([{ node: a, sum: 'x' }, { node: b, sum: 'x' }, { node: c, state: 'damaged' }])).toEqual({ sum: 'x', onlyVerified: false });
    // Two damaged: without checksums 1 of 3 is no majority.
    expect(vote([{ node: a, state: 'damaged' }, { node: b, sum: 'x' }, { node: c, state: 'damaged' }])).toEqual({ sum: 'x', onlyVerified: true });
    expect(vote([{ node: a, sum: 'x' }, { node: b, state: 'damaged' }])).toEqual({ sum: 'x', onlyVerified: true });
  });

  test('no copy, no passing copy, or passing copies split evenly: no source', () => {
    expect(vote([{ node: a, state: 'missing' }, { node: b, state: 'missing' }])).toEqual({ outcome: 'none' });
    expect(vote([{ node: a, state: 'damaged' }, { node: b, state: 'missing' }])).toEqual({ outcome: 'all-damaged' });
    expect(vote([{ node: a, sum: 'x' }, { node: b, sum: 'y' }, { node: c, sum: 'z' }])).toEqual({ outcome: 'no-majority' });
    expect(vote([{ node: a, sum: 'x' }, { node: b, sum: 'y' }])).toEqual({ outcome: 'no-majority' });
    // Copies under recovery are recovery's: not voted, not repaired.
    expect(vote([{ node: a, state: 'busy' }, { node: b, state: 'damaged' }])).toEqual({ outcome: 'busy' });
    expect(vote([{ node: a, state: 'busy' }, { node: b, sum: 'x' }])).toEqual({ sum: 'x', onlyVerified: false });
  });
});

describe('dog vdi check lines', () => {
  test('as the original words them, with the note when checksums decided', () => {
    expect(
      describeCheck(oid, {
        copies: [
          { node: 'a', state: 'missing', fixed: true },
          { node: 'b', state: 'damaged', fixed: true },
          { node: 'c', state: 'ok', fixed: false },
        ],
        outcome: 'repaired',
        onlyVerified: true,
      }),
    ).toEqual({
      stdout: 'fixed missing 0000001000000003 (from the only copy that passes its checksums)\nfixed replica 0000001000000003 (from the only copy that passes its checksums)\n',
      stderr: '',
      failed: false,
    });
    const none = { copies: [], onlyVerified: false } as const;
    expect(describeCheck(oid, { ...none, outcome: 'no-majority' })).toEqual({ stdout: '', stderr: 'no majority of 0000001000000003\n', failed: true });
    expect(describeCheck(oid, { ...none, outcome: 'none' })).toEqual({ stdout: '', stderr: 'no node has 0000001000000003\n', failed: true });
    expect(describeCheck(oid, { ...none, outcome: 'all-damaged' }).stderr).toBe('no copy of 0000001000000003 passes its checksums\n');
  });

  test('the progress bar fills the terminal width', () => {
    expect(progressLine(0, 100, 50)).toBe(`\r  0.0 % [>${' '.repeat(19)}] 0 / 100${' '.repeat(12)}`);
    expect(progressLine(50, 100, 50)).toBe(`\r 50.0 % [${'='.repeat(10)}>${' '.repeat(9)}] 50 / 100${' '.repeat(11)}`);
    expect(progressLine(100, 100, 50)).toBe(`\r100.0 % [${'='.repeat(20)}] 100 / 100${' '.repeat(10)}`);
  });
});

describe('metrics', () => {
  test('requests are counted by op and result and timed; the text is Prometheus exposition', async () => {
    const metrics = new Metrics();
    let now = 1000;
    const clock = { nowMs: () => now, sleep: async () => undefined, after: () => ({ cancel() {} }), every: () => ({ cancel() {} }) };
    const handlers = instrument(
      {
        'gw.read': async () => {
          now += 3;
          return Buffer.alloc(4096);
        },
        'gw.write': async () => {
          throw new SdError('NO_SPACE', 'full');
        },
      } as unknown as Handlers,
      metrics,
      clock,
    );
    await handlers['gw.read']({ op: 'gw.read', oid, offset: 0, length: 4096 }, undefined);
    await expect(handlers['gw.write']({ op: 'gw.write', oid, offset: 0, create: false }, Buffer.alloc(10))).rejects.toThrow('full');
    metrics.checksumFailures = 2;
    const text = renderMetrics(metrics, {
      epoch: 7,
      objects: 3,
      storedBytes: 12,
      recovery: { running: false, total: 0, done: 0 },
      scrub: { running: true, total: 10, done: 4, passes: 1 },
    });
    expect(text).toContain('sheep_requests_total{op="gw.read",result="ok"} 1\n');
    expect(text).toContain('sheep_requests_total{op="gw.write",result="NO_SPACE"} 1\n');
    expect(text).toContain('sheep_read_bytes_total 4096\n');
    expect(text).toContain('sheep_written_bytes_total 0\n'); // a failed write wrote nothing
    expect(text).toContain('sheep_client_request_seconds_bucket{le="0.0025"} 1\n');
    expect(text).toContain('sheep_client_request_seconds_bucket{le="0.005"} 2\n');
    expect(text).toContain('sheep_client_request_seconds_count 2\n');
    expect(text).toContain('sheep_checksum_failures_total 2\n');
    expect(text).toContain('sheep_epoch 7\n');
    expect(text).toContain('sheep_scrub_done_objects 4\n');
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [0-9.e+-]+)$/);
  });
});
