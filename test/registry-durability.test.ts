// Defect: a stale VDI registry won after a restart (hardening issue, data loss 1). A registry
// change is acknowledged only once every member has it on disk, and while a cluster waits after a
// restart the newest registry any returning store brings wins, whichever node started first.
// Real sheep on ports 7600-7619; `chattr +i` (root) makes one store's registry unwritable.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeInfo } from '../src/cluster/driver.js';
import { VdiRegistry } from '../src/engine/vdi.js';
import { systemClock } from '../src/io/clock.js';
import { Group, type StoreState } from '../src/sheep/group.js';
import type { MetaStore } from '../src/store/meta.js';
import { Cluster, md5, pattern, poll } from './support/cluster.js';

const MiB = 1024 * 1024;
let clusters: Cluster[] = [];
const immutable: string[] = [];

afterEach(async () => {
  for (const file of immutable.splice(0)) execFileSync('chattr', ['-i', file]);
  const done = clusters;
  clusters = [];
  await Promise.all(done.map((c) => c.destroy()));
});

async function threeNodes(basePort: number): Promise<Cluster> {
  const c = new Cluster({ basePort, prefix: 'sheep-registry-' });
  clusters.push(c);
  await c.startAll([0, 1, 2], 'at once');
  await c.dogOk(['cluster', 'format', '-c', '3'], { port: c.port(0) });
  return c;
}

async function shutdown(c: Cluster): Promise<void> {
  await c.dogOk(['cluster', 'shutdown'], { port: c.port(0) });
  const exits = await Promise.all([0, 1, 2].map((i) => c.exited(i)));
  expect(exits.map((e) => e.code)).toEqual([0, 0, 0]);
}

async function waitRunning(c: Cluster): Promise<void> {
  await poll('running everywhere', async () => {
    for (const i of [0, 1, 2]) if ((await c.status(i)) !== 'running, auto-recovery enabled') return false;
    return true;
  }, 20_000);
}

function vdiNames(c: Cluster, i: number): string[] {
  const json = JSON.parse(fs.readFileSync(path.join(c.storeDir(i), 'vdis.json'), 'utf8')) as { entries: Array<{ name: string; deleted?: boolean }> };
  return json.entries.filter((e) => !e.deleted).map((e) => e.name).sort();
}

describe('the join verdict while a cluster waits after a restart', () => {
  const node = (port: number): NodeInfo => ({ id: `127.0.0.1:${port}`, addr: '127.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 });
  const config = { createdMs: 1, copies: 3, blockSizeShift: 22 };
  const epochs = [{ epoch: 1, timeSec: 1, nodes: [node(1), node(2)] }];
  const meta = {} as MetaStore; // the verdict reads state only
  const log = { info: () => undefined, warn: () => undefined, error: () => undefined };

  function registry(names: string[]): VdiRegistry {
    const r = new VdiRegistry();
    names.forEach((name, k) => r.apply([{ name, vid: k + 1, snapId: 1, snapshotSec: 0, parentVid: 0, createdSec: 1, sizeBytes: MiB, copies: 3, blockSizeShift: 22, deleted: false } as never]));
    return r;
  }

  function waitingMaster(names: string[]): Group {
    const group = new Group(node(1), meta, { ...systemClock, nowMs: () => 1000 }, log);
    group.config = config;
    group.epochs = epochs;
    group.registry = registry(names);
    group.status = 'waiting';
    group.members = [node(1)];
    return group;
  }

  const joiner = (names: string[]): StoreState => ({ config, epochs, registry: registry(names).toJson(), status: 'waiting', recoveryEnabled: true });
  const verdictNames = (group: Group, theirs: StoreState) => {
    const verdict = group.checkJoin(node(2), theirs as never);
    if (!verdict.accept) throw new Error(verdict.reason);
    const state = (verdict.payload as unknown as { state: StoreState }).state;
    return VdiRegistry.fromJson(state.registry).live().map((e) => e.name);
  };

  it('takes a joiner\'s newer registry when the epochs are equal', () => {
    expect(verdictNames(waitingMaster(['a']), joiner(['a', 'v']))).toEqual(['a', 'v']);
  });

  it('keeps its own registry when the joiner\'s is older', () => {
    expect(verdictNames(waitingMaster(['a', 'v']), joiner(['a']))).toEqual(['a', 'v']);
  });
});

describe('VDI registry durability', () => {
  it('a store restarted first with an older registry does not lose a VDI the others stored', async () => {
    const c = await threeNodes(7600);
    await c.dogOk(['vdi', 'create', 'a', '4M'], { port: c.port(0) });
    // What a failed registry write leaves behind on one store: the registry before the change.
    const stale = fs.readFileSync(path.join(c.storeDir(2), 'vdis.json'));
    const data = pattern(16 * MiB, 12);
    await c.dogOk(['vdi', 'create', 'v', String(data.length)], { port: c.port(0) });
    await c.dogOk(['vdi', 'write', 'v'], { port: c.port(0), input: data });
    await shutdown(c);
    fs.writeFileSync(path.join(c.storeDir(2), 'vdis.json'), stale);
    expect(vdiNames(c, 2)).toEqual(['a']);

    await c.start(2); // the stale store first: it is the master while the others come back
    await c.start(0);
    await c.start(1);
    await waitRunning(c);
    for (const i of [0, 1, 2]) {
      const list = (await c.dogOk(['vdi', 'list', '-r'], { port: c.port(i) })).out;
      expect(list.split('\n').filter(Boolean).map((line) => line.split(' ')[1])).toEqual(['a', 'v']);
      expect(await c.readMd5(i, 'v')).toBe(md5(data));
    }
    // The newest registry is stored again where it was stale.
    await poll('registry re-stored on store 2', () => vdiNames(c, 2).join() === 'a,v', 10_000);
  });

  it('a change one store cannot write is not acknowledged, and is stored once the store can write again', async () => {
    const c = await threeNodes(7610);
    await c.dogOk(['vdi', 'create', 'a', '4M'], { port: c.port(0) });
    const file = path.join(c.storeDir(2), 'vdis.json');
    execFileSync('chattr', ['+i', file]); // a registry file that cannot be replaced (EPERM)
    immutable.push(file);

    const failed = await c.dogOk(['vdi', 'create', 'v', '16M'], { port: c.port(0) }).catch((error: Error) => error);
    expect(failed).toBeInstanceOf(Error);
    expect(String(failed)).toMatch(/exited 1: Failed to create VDI v: the VDI registry change could not be stored on 127\.0\.0\.1:7612: .*EPERM/);
    expect(String(failed).trim().split('\n')).toHaveLength(1);
    expect(vdiNames(c, 2)).toEqual(['a']);
    expect(c.log(2)).toContain('failed to store the VDI registry; retrying');

    execFileSync('chattr', ['-i', file]);
    immutable.splice(immutable.indexOf(file), 1);
    await poll('the retried write on store 2', () => vdiNames(c, 2).join() === 'a,v', 10_000);
    // Now every store has it: the next change is acknowledged, and a restart keeps both.
    await c.dogOk(['vdi', 'create', 'w', '4M'], { port: c.port(0) });
    const data = pattern(16 * MiB, 13);
    await c.dogOk(['vdi', 'write', 'v'], { port: c.port(1), input: data });
    await shutdown(c);
    for (const i of [2, 0, 1]) await c.start(i);
    await waitRunning(c);
    for (const i of [0, 1, 2]) {
      expect(vdiNames(c, i)).toEqual(['a', 'v', 'w']);
      expect(await c.readMd5(i, 'v')).toBe(md5(data));
    }
  });
});
