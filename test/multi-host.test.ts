// A cluster of four hosts on one machine over ZooKeeper: each sheep runs in its own network
// namespace with its own address (test/support/netns-hosts.ts), so sheep reach each other and
// ZooKeeper (on host 1) only over the bridge, as hosts on a LAN do. dog runs from the machine
// (through the bridge) or on a host; NBD clients run on a host against its loopback; sheepfs runs
// on a host and mounts on the machine. Needs root. Sheep ports 8700-8703, NBD 8710-8713 and
// ZooKeeper 12201 belong to this file; namespaces sdt-t1..4, bridge sdtbr0.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dogBin, md5, parseEpochHistory, pattern, poll, repoRoot } from './support/cluster.js';
import { NetnsHosts } from './support/netns-hosts.js';
import { forceUnmount, isMounted, waitFor } from './support/sheepfs-helpers.js';

const MiB = 1024 * 1024;
const basePort = 8700;
const nbdBasePort = 8710;
const zookeeperPort = 12201;
/** The ZooKeeper session timeout: a host cut off for longer is out of the cluster. */
const sessionTimeoutSec = 3;
/** The bound: a lost host is removed within the session timeout + 2 s. */
const removedWithinMs = sessionTimeoutSec * 1000 + 2000;
const hostCount = 4;
const all = [0, 1, 2, 3];
/** Sheep i runs on host i + 1; ZooKeeper on host 1. */
const hostOf = (i: number) => i + 1;

let hosts: NetnsHosts | undefined;
let cluster: Cluster | undefined;
let zookeeper: { address: string; stop(): Promise<void> } | undefined;
const workDir = fs.mkdtempSync('/tmp/sheep-multi-host-');

beforeAll(async () => {
  hosts = NetnsHosts.create({ count: hostCount });
  const h = hosts;
  zookeeper = await h.startZookeeper(1, zookeeperPort, path.join(workDir, 'zookeeper'));
  // The key does not travel through ZooKeeper: every host holds the same file, as real hosts do.
  const keyFile = path.join(workDir, 'cluster.key');
  fs.writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  cluster = new Cluster({
    basePort,
    prefix: 'sheep-multi-host-',
    place: (i) => h.place(hostOf(i)),
    driver: `zookeeper:${zookeeper.address}/multi-host,timeout=${sessionTimeoutSec}`,
    sheepArgs: (i) => ['--nbd', `127.0.0.1:${nbdBasePort + i}`, '-k', keyFile],
  });
}, 120_000);

afterAll(async () => {
  await cluster?.destroy();
  await zookeeper?.stop();
  hosts?.destroy();
  fs.rmSync(workDir, { recursive: true, force: true });
}, 60_000);

/** Waits for every live node to have `expected.length` epochs, then checks the history (node ids per epoch). */
async function expectHistory(c: Cluster, expected: number[][]): Promise<void> {
  await poll(`epoch ${expected.length} on every node`, async () => {
    const infos = await Promise.all(c.live().map((i) => c.ask(i, (client) => client.clusterInfo())));
    return infos.every((info) => info?.epochs.length === expected.length);
  }, 30_000);
  const want = expected.map((nodes, k) => ({ epoch: k + 1, nodes: nodes.map((i) => c.nodeId(i)) }));
  for (const i of c.live()) expect(parseEpochHistory((await c.dogOk(['cluster', 'info'], { port: c.port(i) })).out)).toEqual(want);
}

/** Waits until `nodes` all have `count` epochs. */
async function expectEpochs(c: Cluster, nodes: number[], count: number): Promise<void> {
  await poll(`epoch ${count} on nodes ${nodes.join(',')}`, async () => {
    const infos = await Promise.all(nodes.map((i) => c.ask(i, (client) => client.clusterInfo())));
    return infos.every((info) => info?.epochs.length === count);
  }, 30_000);
}

async function md5ThroughEveryHost(c: Cluster, name: string): Promise<string[]> {
  return Promise.all(c.live().map((i) => c.readMd5(i, name)));
}

describe('four hosts in network namespaces', () => {
  const first = pattern(24 * MiB, 31);
  const second = pattern(8 * MiB, 32);

  it('join: four sheep on four addresses form one cluster; every host lists the same nodes', async () => {
    const c = cluster!;
    await c.startAll(all, 'at once');
    const lists = await Promise.all(all.map(async (i) => (await c.dogOk(['node', 'list'], { port: c.port(i) })).out));
    for (const list of lists) expect(list).toBe(lists[0]);
    expect(await c.nodeIds(2)).toEqual(['10.77.0.11:8700', '10.77.0.12:8701', '10.77.0.13:8702', '10.77.0.14:8703']);
    expect((await c.dogOk(['cluster', 'format', '-c', '3'])).out).toBe('using backend plain store\n');
    await expectHistory(c, [all]);
    await c.dogOk(['vdi', 'create', 'v', '64M'], { port: c.port(1) });
    await c.dogOk(['vdi', 'write', 'v'], { port: c.port(1), input: first });
    await c.waitForFullCopies(all, 3, 60_000, 6);
    expect(await md5ThroughEveryHost(c, 'v')).toEqual(all.map(() => md5(Buffer.concat([first, Buffer.alloc(40 * MiB)]))));
  });

  it('crash: a SIGKILLed host leaves, its copies are made again on the other three', async () => {
    const c = cluster!;
    await c.kill(2);
    await c.waitForMembers();
    await expectHistory(c, [all, [0, 1, 3]]);
    await c.waitForFullCopies([0, 1, 3], 3, 60_000, 6);
    // Written while host 3 is down: it must never serve its older copies when it is back.
    await c.dogOk(['vdi', 'write', 'v', '0'], { port: c.port(3), input: second });
  });

  it('recovery: the crashed host returns, catches up, and every host reads the same bytes', async () => {
    const c = cluster!;
    await c.start(2);
    await c.waitForMembers();
    await expectHistory(c, [all, [0, 1, 3], all]);
    await c.waitForFullCopies(all, 3, 60_000, 6);
    const expected = Buffer.concat([second, first.subarray(second.length), Buffer.alloc(40 * MiB)]);
    expect(await md5ThroughEveryHost(c, 'v')).toEqual(all.map(() => md5(expected)));
  });

  it('leave: dog node kill stops a host\'s sheep cleanly and the rest recover', async () => {
    const c = cluster!;
    await c.dogOk(['node', 'kill', '0'], { port: c.port(3) });
    expect(await c.exited(0)).toEqual({ code: 0, signal: null });
    await c.waitForMembers();
    await expectHistory(c, [all, [0, 1, 3], all, [1, 2, 3]]);
    await c.waitForFullCopies([1, 2, 3], 3, 60_000, 6);
    const read = await md5ThroughEveryHost(c, 'v');
    expect(new Set(read).size).toBe(1);
    await c.start(0);
    await c.waitForMembers();
    await c.waitForFullCopies(all, 3, 60_000, 6);
  });
});

/** Waits until nodes `members` list exactly themselves (asked in parallel). */
async function waitForMembersOf(c: Cluster, members: number[], everyMs = 200): Promise<void> {
  const want = members.map((i) => c.nodeId(i)).sort().join(',');
  await poll(`members ${members.join(',')}`, async () => {
    const lists = await Promise.all(members.map((i) => c.ask(i, (client) => client.nodeList())));
    return lists.every((list) => list?.map((node) => node.id).sort().join(',') === want);
  }, 30_000, everyMs);
}

describe('a host cut off from the others (link down)', () => {
  // What 'v' holds after the scenarios above, and what is written while host 4 is away.
  const before = Buffer.concat([pattern(8 * MiB, 32), pattern(24 * MiB, 31).subarray(8 * MiB), Buffer.alloc(40 * MiB)]);
  const third = pattern(4 * MiB, 34);
  const expected = Buffer.concat([third, before.subarray(third.length)]);

  it('longer than the session timeout: it leaves, its data is recovered elsewhere, it refuses writes', async () => {
    const c = cluster!;
    expect(await md5ThroughEveryHost(c, 'v')).toEqual(all.map(() => md5(before)));
    const cutAtMs = Date.now();
    hosts!.cut(hostOf(3));
    await waitForMembersOf(c, [0, 1, 2], 50);
    const removedMs = Date.now() - cutAtMs;
    console.log(`netns: a host cut off was removed after ${removedMs} ms (session timeout ${sessionTimeoutSec} s)`);
    expect(removedMs).toBeLessThan(removedWithinMs);
    await expectEpochs(c, [0, 1, 2], 6);
    await c.waitForFullCopies([0, 1, 2], 3, 60_000, 6);
    await c.dogOk(['vdi', 'write', 'v', '0'], { port: c.port(0), input: third });
    expect(await Promise.all([0, 1, 2].map((i) => c.readMd5(i, 'v')))).toEqual([0, 1, 2].map(() => md5(expected)));

    // On the cut-off side, a write through its own sheep is held, then refused: never applied.
    const refused = await hosts!.run(hostOf(3), process.execPath, [
      dogBin, 'vdi', 'write', 'v', String(32 * MiB), '4096', '-a', c.address(3), '-p', String(c.port(3)),
    ], { input: Buffer.alloc(4096, 0xff), timeoutMs: 60_000 });
    expect({ code: refused.code, stderr: refused.stderr }).toEqual({
      code: 1,
      stderr: 'This node is cut off from the cluster coordinator (no answer for 10 s)\n',
    });
  });

  it('reconnected, it rejoins as a returning node and the md5 read through every host is identical', async () => {
    const c = cluster!;
    hosts!.restore(hostOf(3));
    await poll('host 4 to rejoin', () => c.log(3).includes('"msg":"rejoined the cluster"'), 30_000);
    await c.waitForMembers();
    await expectEpochs(c, all, 7);
    const history = parseEpochHistory((await c.dogOk(['cluster', 'info'], { port: c.port(3) })).out);
    expect(history.slice(-2).map((record) => record.nodes)).toEqual([[0, 1, 2].map((i) => c.nodeId(i)), all.map((i) => c.nodeId(i))]);
    await c.waitForFullCopies(all, 3, 60_000, 6);
    expect(await md5ThroughEveryHost(c, 'v')).toEqual(all.map(() => md5(expected)));
  });
});

describe('clients on one host reach VDIs written on another', () => {
  const data = pattern(12 * MiB, 33);
  const mountDir = fs.mkdtempSync('/tmp/sheep-multi-host-mnt-');
  let sheepfs: ChildProcess | undefined;

  afterAll(async () => {
    if (sheepfs && sheepfs.exitCode === null && sheepfs.signalCode === null) {
      const exited = new Promise((resolve) => sheepfs!.once('exit', resolve));
      sheepfs.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      sheepfs.kill('SIGKILL');
    }
    forceUnmount(mountDir);
    fs.rmSync(mountDir, { recursive: true, force: true });
  }, 30_000);

  it('NBD on host 2 (its loopback) reads and writes a VDI written through host 1', async () => {
    const c = cluster!;
    await c.dogOk(['vdi', 'create', 'remote', '16M'], { port: c.port(0) });
    await c.dogOk(['vdi', 'write', 'remote'], { port: c.port(0), input: data });
    const url = `nbd://127.0.0.1:${nbdBasePort + 1}/remote`;
    const copied = await hosts!.run(hostOf(1), 'nbdcopy', [url, '-'], { timeoutMs: 60_000 });
    expect(copied.code, copied.stderr).toBe(0);
    const read = await hosts!.run(hostOf(1), 'bash', ['-c', `nbdcopy '${url}' - | md5sum`]);
    expect(read.stdout.split(' ')[0]).toBe(md5(Buffer.concat([data, Buffer.alloc(4 * MiB)])));
    // A write through NBD on host 2 is read through dog on host 4.
    const written = await hosts!.run(hostOf(1), 'bash', ['-c', `head -c 4M /dev/zero | tr '\\0' x | nbdcopy - '${url}'`]);
    expect(written.code, written.stderr).toBe(0);
    const head = (await c.dogOk(['vdi', 'read', 'remote', '0', '4M'], { port: c.port(3) })).stdout;
    expect(head.equals(Buffer.alloc(4 * MiB, 'x'))).toBe(true);
  });

  it('sheepfs run on host 3 (mounted on the machine) reads what dog wrote through host 1', async () => {
    const c = cluster!;
    await c.dogOk(['vdi', 'create', 'files', '16M'], { port: c.port(0) });
    await c.dogOk(['vdi', 'write', 'files'], { port: c.port(0), input: data });
    const [program, ...args] = [
      ...hosts!.wrap(hostOf(2)),
      process.execPath, path.join(repoRoot, 'bin', 'sheepfs'), '-f', '-a', c.address(2), '-p', String(c.port(2)),
      '--log', path.join(c.root, 'sheepfs.log'), mountDir,
    ];
    sheepfs = spawn(program!, args, { stdio: 'ignore' });
    expect(await waitFor(() => isMounted(mountDir), 20_000)).toBe(true);
    // Only child processes touch the mount: a slip in sheepfs must not hang the test runner.
    const sh = (command: string) => hosts!.run(hostOf(2), 'bash', ['-c', command], { timeoutMs: 60_000 });
    expect((await sh(`echo files > '${mountDir}/vdi/mount'`)).code).toBe(0);
    const read = await sh(`head -c ${data.length} '${mountDir}/volume/files' | md5sum`);
    expect(read.stdout.split(' ')[0]).toBe(md5(data));
    const list = await sh(`cat '${mountDir}/node/list'`);
    expect(list.stdout).toBe((await c.dogOk(['node', 'list'], { port: c.port(0) })).out);
  });
});
