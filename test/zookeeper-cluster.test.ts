// Real sheep over a private ZooKeeper on loopback (issue #11): format, write, md5 through every
// node; a SIGKILLed or SIGSTOPped sheep is removed within the session timeout + 2 s and the
// cluster recovers; a woken one refuses client I/O until it has rejoined; a ZooKeeper outage
// stalls writes and they resume when it is back, nothing lost; an unreachable ZooKeeper at start
// is one line and a non-zero exit; a sheep of another cluster is refused; a three-server ensemble
// loses a server and the sheep see nothing. Sheep ports 8300-8399, ZooKeeper 12182 (standalone)
// and 12185-12187 (ensemble, peers 12285.., elections 12385..).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseZkSpec } from '../src/cluster/zk-layout.js';
import { connectZk } from '../src/io/zk-client.js';
import { Cluster, md5, parseEpochHistory, pattern, poll, runSheep, makeTempDir } from './support/cluster.js';
import { startEnsemble, startZookeeper, stopAllZookeepers, type PrivateZookeeper } from './support/zookeeper.js';

const MiB = 1024 * 1024;
const timeoutSec = 3;
/** The bound: a dead sheep is removed within the session timeout + 2 s. */
const removedWithinMs = timeoutSec * 1000 + 2000;
const zkPort = 12182;
let zk: PrivateZookeeper;
let clusters: Cluster[] = [];
/** Key files and stores made outside a Cluster's own directory, removed in afterAll. */
const tempDirs: string[] = [];

function tempDir(prefix: string): string {
  const dir = makeTempDir(prefix);
  tempDirs.push(dir);
  return dir;
}

beforeAll(async () => {
  zk = await startZookeeper(zkPort);
}, 90_000);

afterAll(async () => {
  await stopAllZookeepers();
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  const done = clusters;
  clusters = [];
  for (const c of done) for (const i of c.live()) await c.kill(i, 'SIGCONT', false);
  await Promise.all(done.map((c) => c.destroy()));
});

/** A cluster key file, as `openssl rand -base64 32 > FILE; chmod 600 FILE` makes one. */
function newKeyFile(): string {
  const file = path.join(tempDir('sheep-zk-key-'), 'cluster.key');
  fs.writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  return file;
}

/**
 * A cluster on its own root znode of the file's ZooKeeper (or of `servers`); every sheep is given
 * the cluster key (-k): the zookeeper driver does not carry it.
 */
function zkCluster(basePort: number, root: string, servers = zk.address): Cluster {
  const keyFile = newKeyFile();
  const c = new Cluster({ basePort, prefix: 'sheep-zk-', driver: `zookeeper:${servers}/${root},timeout=${timeoutSec}`, sheepArgs: () => ['-k', keyFile] });
  clusters.push(c);
  return c;
}

/** Every queue entry of a cluster's root, as text. */
async function queueEntries(driver: string): Promise<string[]> {
  const spec = parseZkSpec(driver.slice('zookeeper:'.length));
  const session = await connectZk({ servers: spec.servers, sessionTimeoutMs: 3000, connectTimeoutMs: 5000, onState() {}, onWatch() {} });
  try {
    const names = (await session.getChildren(`${spec.root}/queue`, false)) ?? [];
    return Promise.all(names.sort().map(async (name) => String(await session.getData(`${spec.root}/queue/${name}`, false))));
  } finally {
    await session.close();
  }
}

async function formatAndWrite(c: Cluster, data: Buffer, copies = 3): Promise<void> {
  expect((await c.dogOk(['cluster', 'format', '-c', String(copies)])).out).toBe('using backend plain store\n');
  await c.dogOk(['vdi', 'create', 'v', String(data.length)]);
  await c.dogOk(['vdi', 'write', 'v'], { input: data });
}

async function expectMd5Everywhere(c: Cluster, nodes: number[], data: Buffer): Promise<void> {
  for (const i of nodes) expect(await c.readMd5(i, 'v'), `md5 through node ${i}`).toBe(md5(data));
}

/** Resolves with the time at which node `asker` no longer lists node `gone`. */
function removedAt(c: Cluster, asker: number, gone: number): Promise<number> {
  return poll(`node ${gone} to be removed`, async () => {
    const ids = await c.ask(asker, (client) => client.nodeList());
    return ids !== undefined && !ids.some((node) => node.id === c.nodeId(gone)) ? Date.now() : undefined;
  }, 30_000, 50);
}

/** Every copy of every object is the same on every holder. */
function expectConvergedCopies(c: Cluster, holders: Map<string, number[]>): void {
  for (const [oid, stores] of holders) {
    expect(new Set(stores.map((i) => c.objectHash(i, oid))).size, `copies of ${oid} on ${stores.join(',')}`).toBe(1);
  }
}

describe('sheep over ZooKeeper', () => {
  it('four sheep: md5 through every node; kill -9 removes one in time, recovery, and it comes back as a returning node', async () => {
    const c = zkCluster(8300, 'kill');
    await c.startAll([0, 1, 2, 3]);
    const first = pattern(16 * MiB, 1);
    await formatAndWrite(c, first);
    await expectMd5Everywhere(c, [0, 1, 2, 3], first);

    const killedAtMs = Date.now();
    await c.kill(2);
    const removedMs = (await removedAt(c, 0, 2)) - killedAtMs;
    console.log(`zookeeper: a SIGKILLed sheep was removed after ${removedMs} ms (session timeout ${timeoutSec} s)`);
    expect(removedMs).toBeLessThan(removedWithinMs);
    await c.waitForMembers();
    await c.waitForFullCopies([0, 1, 3], 3, 60_000);
    await expectMd5Everywhere(c, [0, 1, 3], first);

    // Written while it is away; back, it keeps what it had and fetches what it missed.
    const second = pattern(16 * MiB, 2);
    await c.dogOk(['vdi', 'write', 'v'], { input: second, port: c.port(1) });
    await c.start(2);
    await c.waitForMembers();
    expectConvergedCopies(c, await c.waitForFullCopies([0, 1, 2, 3], 3, 60_000));
    await expectMd5Everywhere(c, [0, 1, 2, 3], second);
    const history = parseEpochHistory((await c.dogOk(['cluster', 'info'])).out);
    expect(history.map((record) => record.nodes.length)).toEqual([4, 3, 4]);

    // The events are in ZooKeeper, readable by whoever reaches it: the key is not among them.
    const key = fs.readFileSync(path.join(c.storeDir(0), 'cluster.key'), 'utf8').trim();
    const entries = await queueEntries(c.options.driver!);
    expect(entries.some((entry) => entry.includes('"t":"join_request"'))).toBe(true);
    expect(entries.filter((entry) => entry.includes(key))).toEqual([]);
  });

  it('a sheep stopped past the session timeout is removed; woken, it refuses client I/O until it has rejoined', async () => {
    const c = zkCluster(8310, 'stop');
    await c.startAll([0, 1, 2, 3]);
    const first = pattern(8 * MiB, 3);
    await formatAndWrite(c, first);

    const stoppedAtMs = Date.now();
    await c.kill(3, 'SIGSTOP', false);
    const removedMs = (await removedAt(c, 0, 3)) - stoppedAtMs;
    console.log(`zookeeper: a SIGSTOPped sheep was removed after ${removedMs} ms`);
    expect(removedMs).toBeLessThan(removedWithinMs);
    const second = pattern(8 * MiB, 4);
    await c.dogOk(['vdi', 'write', 'v'], { input: second });

    // Woken: the first thing it learns is that its session expired; it is out (writes through it
    // are refused) until a new incarnation has joined, which then catches up.
    await c.kill(3, 'SIGCONT', false);
    await poll('node 3 to rejoin', () => c.log(3).includes('"msg":"rejoined the cluster"'), 30_000);
    const log = c.log(3);
    const expiredAt = log.indexOf('the ZooKeeper session expired');
    const outAt = log.indexOf('this node was reported left');
    expect(expiredAt).toBeGreaterThanOrEqual(0);
    expect(outAt).toBeGreaterThan(expiredAt);
    expect(log.indexOf('"msg":"rejoined the cluster"')).toBeGreaterThan(outAt);
    await c.waitForMembers();
    expectConvergedCopies(c, await c.waitForFullCopies([0, 1, 2, 3], 3, 60_000));
    await expectMd5Everywhere(c, [0, 1, 2, 3], second);
    const history = parseEpochHistory((await c.dogOk(['cluster', 'info'])).out);
    expect(history.map((record) => record.nodes.length)).toEqual([4, 3, 4]);
  });

  it('a ZooKeeper outage stalls writes everywhere; they resume when it is back and nothing is lost', async () => {
    const c = zkCluster(8320, 'outage');
    await c.startAll([0, 1, 2]);
    const first = pattern(8 * MiB, 5);
    await formatAndWrite(c, first);
    const epochBefore = parseEpochHistory((await c.dogOk(['cluster', 'info'])).out).length;

    await zk.stop();
    // Every sheep notices within two thirds of the session timeout and fences its client I/O.
    await poll('every sheep to fence itself', () => [0, 1, 2].every((i) => c.log(i).includes('cut off from the cluster coordinator')), 10_000, 50);
    const second = pattern(8 * MiB, 6);
    const write = c.dog(['vdi', 'write', 'v'], { input: second, port: c.port(1), timeoutMs: 60_000 });
    write.catch(() => undefined);
    // The write is held, not failed and not applied behind the coordinator's back.
    const raced = await Promise.race([write.then(() => 'finished'), new Promise((resolve) => setTimeout(resolve, 1500, 'held'))]);
    expect(raced).toBe('held');
    await zk.start();
    const written = await write;
    expect({ code: written.code, stderr: written.stderr }).toEqual({ code: 0, stderr: '' });
    await expectMd5Everywhere(c, [0, 1, 2], second);
    // The sessions outlived the outage: nobody left, no epoch changed.
    expect(parseEpochHistory((await c.dogOk(['cluster', 'info'])).out)).toHaveLength(epochBefore);
    for (const i of [0, 1, 2]) expect(c.log(i)).toContain('the cluster coordinator is reachable again');
  });

  it('a sheep that cannot reach ZooKeeper at start says so in one line and exits non-zero', async () => {
    const store = tempDir('sheep-zk-unreachable-');
    const result = await runSheep(['-f', '-b', '127.0.0.1', '-p', '8330', '--nbd', 'off', '-k', newKeyFile(), '-c', 'zookeeper:127.0.0.1:12199,timeout=3', store], 30_000);
    expect({ code: result.code, stderr: result.stderr }).toEqual({
      code: 1,
      stderr: 'sheep: cannot reach ZooKeeper at 127.0.0.1:12199: connection refused\n',
    });
  });

  it('refuses to start a sheep without the cluster key, which ZooKeeper must not carry', async () => {
    const store = tempDir('sheep-zk-keyless-');
    const result = await runSheep(['-f', '-b', '127.0.0.1', '-p', '8331', '--nbd', 'off', '-c', `zookeeper:${zk.address}/keyless`, store], 30_000);
    expect({ code: result.code, stderr: result.stderr }).toEqual({
      code: 1,
      stderr: 'sheep: this cluster driver does not carry the cluster key between hosts: start the sheep with -k FILE (docs/zookeeper-driver.md)\n',
    });
  });

  it('refuses a sheep whose store belongs to another cluster', async () => {
    const other = zkCluster(8340, 'other');
    await other.startAll([0]);
    expect((await other.dogOk(['cluster', 'format', '-c', '1'])).out).toBe('using backend plain store\n');
    await other.stop(true);
    const c = zkCluster(8341, 'home');
    await c.startAll([0, 1]);
    expect((await c.dogOk(['cluster', 'format', '-c', '2'])).out).toBe('using backend plain store\n');
    // The other cluster's store, started against this cluster's ZooKeeper root.
    const foreign = new Cluster({ basePort: 8343, prefix: 'sheep-zk-', driver: c.options.driver!, storeDir: () => other.storeDir(0) });
    clusters.push(foreign);
    const refused = await foreign.startExpectExit(0);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^sheep: the cluster refused this node: .+\n$/);
    expect(await c.nodeIds(0)).toEqual([c.nodeId(0), c.nodeId(1)]);
  });
});

describe('sheep over a three-server ZooKeeper ensemble', () => {
  it('loses one ZooKeeper server, the leader, and the sheep see nothing of it', async () => {
    const ensemble = await startEnsemble(12185);
    const c = zkCluster(8350, 'ensemble', ensemble.map((server) => server.address).join(','));
    await c.startAll([0, 1, 2]);
    const first = pattern(8 * MiB, 7);
    await formatAndWrite(c, first);
    const historyBefore = (await c.dogOk(['cluster', 'info'])).out;

    const modes = await Promise.all(ensemble.map((server) => server.mode()));
    const leader = ensemble[modes.indexOf('leader')]!;
    leader.kill();
    const second = pattern(8 * MiB, 8);
    await c.dogOk(['vdi', 'write', 'v'], { input: second, timeoutMs: 60_000 });
    await expectMd5Everywhere(c, [0, 1, 2], second);
    await c.dogOk(['vdi', 'create', 'w', String(4 * MiB)], { port: c.port(2) });
    expect((await c.dogOk(['vdi', 'list', '-r'])).out.split('\n').filter(Boolean)).toHaveLength(2);
    // No sheep left or joined: the epoch history is the one from before.
    expect((await c.dogOk(['cluster', 'info'])).out).toBe(historyBefore);
    await c.waitForMembers();
  });
});
