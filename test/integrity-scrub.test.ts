// Scrubbing and `sheep --metrics` on real sheep: a damaged and a missing copy are found by the
// background scrub (started at once by `dog node scrub set-throttle`) and repaired; the
// Prometheus counters a scrape shows move with client I/O, checksum failures and repairs.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { dataOffset } from '../src/store/block-sums.js';
import { makeTempDir, md5, pattern, poll, runSheep, startCluster, type Cluster } from './support/cluster.js';

const MiB = 2 ** 20;
const metricsPort = (i: number) => 9400 + i;
const clusters: Cluster[] = [];
afterEach(async () => {
  for (const c of clusters.splice(0)) await c.destroy();
});

async function scrape(i: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${metricsPort(i)}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** The value of one sample (name with its labels, as printed), 0 when absent. */
function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

describe('scrub', () => {
  it('finds and repairs a damaged and a missing copy in the background; the metrics show it', async () => {
    const c = await startCluster({
      nodes: 3,
      copies: 3,
      basePort: 8430,
      prefix: 'sheep-scrub-',
      sheepArgs: (i) => ['--metrics', String(metricsPort(i))],
    });
    clusters.push(c);
    const data = pattern(16 * MiB, 41);
    await c.dogOk(['vdi', 'create', 'v', String(data.length)]);
    const idle = await Promise.all([0, 1, 2].map(scrape));
    await c.dogOk(['vdi', 'write', 'v'], { input: data });
    expect(md5((await c.dogOk(['vdi', 'read', 'v'])).stdout)).toBe(md5(data));

    // Client I/O counted where it came in (dog sends each object to its primary).
    const busy = await Promise.all([0, 1, 2].map(scrape));
    const total = (texts: string[], name: string) => texts.reduce((sum, text) => sum + sample(text, name), 0);
    // The data, and 4-byte owner-table entries for the objects it allocated (an update may be sent twice).
    const written = total(busy, 'sheep_written_bytes_total') - total(idle, 'sheep_written_bytes_total');
    expect(written).toBeGreaterThanOrEqual(data.length + 4 * 4);
    expect(written).toBeLessThanOrEqual(data.length + 4 * 4 * 4);
    expect(total(busy, 'sheep_read_bytes_total')).toBeGreaterThanOrEqual(data.length);
    expect(total(busy, 'sheep_requests_total{op="gw.write",result="ok"}')).toBeGreaterThanOrEqual(4);
    expect(total(busy, 'sheep_client_request_seconds_count')).toBeGreaterThan(total(idle, 'sheep_client_request_seconds_count'));
    expect(total(busy, 'sheep_peer_request_seconds_count')).toBeGreaterThan(0);
    for (const text of busy) {
      expect(sample(text, 'sheep_epoch')).toBe(1);
      expect(sample(text, 'sheep_objects')).toBe(5); // four data objects and the owner table, on every node
      expect(sample(text, 'sheep_stored_bytes')).toBeGreaterThanOrEqual(16 * MiB);
      expect(text).toContain('# TYPE sheep_client_request_seconds histogram');
    }

    const oids = await Promise.all(
      [0, 1].map(async (index) => /Looking for the object ([0-9a-f]{16})/.exec((await c.dogOk(['vdi', 'object', 'location', 'v', String(index)])).out)![1]!),
    );
    const good = oids.map((oid) => c.objectHash(0, oid));
    const fd = fs.openSync(c.objectPath(1, oids[0]!), 'r+');
    fs.writeSync(fd, Buffer.from('rot'), 0, 3, dataOffset + 2 * MiB);
    fs.closeSync(fd);
    fs.rmSync(c.objectPath(2, oids[1]!));

    expect((await c.dogOk(['node', 'scrub', 'get-throttle'])).out).toBe('max 10 objects per 1000 ms\n');
    expect((await c.dogOk(['node', 'scrub', 'set-throttle', '1000', '1'])).out).toBe('max 1000 objects per 1 ms\n');
    expect((await c.dogOk(['node', 'scrub', 'get-throttle'], { port: c.port(2) })).out).toBe('max 1000 objects per 1 ms\n');
    await poll('both copies repaired', () => c.objectHash(1, oids[0]!) === good[0] && c.objectHash(2, oids[1]!) === good[1], 30_000);
    await poll('a pass done everywhere', async () => {
      const rows = (await c.dogOk(['node', 'scrub', '-r'])).out.trim().split('\n');
      return rows.length === 3 && rows.every((row) => Number(row.split(' ')[4]) >= 1);
    }, 30_000);
    const table = (await c.dogOk(['node', 'scrub'])).out.split('\n');
    expect(table[0]).toBe('  Id   Host:Port          Scrubbing   Progress   Passes  Damaged  Repaired');
    expect(table.slice(1, 4).map((row) => row.slice(0, 26))).toEqual([0, 1, 2].map((i) => `${String(i).padStart(4)}   ${c.nodeId(i).padEnd(19)}`));

    const after = await Promise.all([0, 1, 2].map(scrape));
    expect(sample(after[1]!, 'sheep_checksum_failures_total')).toBeGreaterThanOrEqual(1);
    expect(total(after, 'sheep_repairs_total')).toBeGreaterThanOrEqual(2);
    for (const text of after) expect(sample(text, 'sheep_scrub_passes_total')).toBeGreaterThanOrEqual(1);
    expect(c.log(1)).toContain(`"oid":"${oids[0]}"`);
    for (const i of [0, 1, 2]) expect(md5((await c.dogOk(['vdi', 'read', 'v'], { port: c.port(i) })).stdout)).toBe(md5(data));
  });

  it('bad --metrics and --scrub values are one line', async () => {
    const dir = makeTempDir('sheep-metrics-arg-');
    try {
      const bad = await runSheep(['-f', '--metrics', 'nowhere', dir]);
      expect([bad.code, bad.stderr]).toEqual([1, "sheep: invalid --metrics 'nowhere': expected [ADDR:]PORT or off\n"]);
      const scrub = await runSheep(['-f', '--scrub', 'sometimes', dir]);
      expect([scrub.code, scrub.stderr]).toEqual([1, "sheep: invalid --scrub 'sometimes': expected on or off\n"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
