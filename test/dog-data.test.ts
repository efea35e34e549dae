// dog's data commands end to end (issue #15): attributes, alter-copy, backup and restore, locks.
// Real sheep on loopback driven by the real dog; every effect is checked through another node.
// Ports 8500-8539 belong to this file.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dog, dogBin, md5, pattern, poll, run, startCluster, type DogResult, type ProcessResult } from './support/cluster.js';
import { maskDates, maskRawVdiList } from './support/mask.js';
import { rawNbdOpen } from './support/nbd-raw.js';
import { forceUnmount, isMounted, waitFor } from './support/sheepfs-helpers.js';

const MiB = 1024 * 1024;
const sheepfsBin = path.join(path.dirname(dogBin), 'sheepfs');

function expectOneLineFailure(result: DogResult, message: string, code?: number): void {
  expect(result.code, `stdout: ${result.out} stderr: ${result.stderr}`).not.toBe(0);
  if (code !== undefined) expect(result.code).toBe(code);
  expect(result.stderr).toBe(`${message}\n`);
  expect(result.out).toBe('');
}

describe('attributes', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 2, basePort: 8500, prefix: 'dog-attr-' });
    await c.dogOk(['vdi', 'create', 'vm', '16M']);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('sets, reads through another node, refuses -x on an existing key, deletes', async () => {
    expect((await c.dogOk(['vdi', 'setattr', 'vm', 'owner', 'alice'], { port: c.port(0) })).out).toBe('');
    expect((await c.dogOk(['vdi', 'getattr', 'vm', 'owner'], { port: c.port(1) })).out).toBe('alice');
    // The value from stdin, bytes as given.
    const blob = Buffer.from([0, 1, 2, 255, 10, 13]);
    await c.dogOk(['vdi', 'setattr', 'vm', 'blob'], { port: c.port(2), input: blob });
    expect((await c.dogOk(['vdi', 'getattr', 'vm', 'blob'], { port: c.port(0) })).stdout.equals(blob)).toBe(true);
    expectOneLineFailure(await c.dog(['vdi', 'setattr', '-x', 'vm', 'owner', 'bob'], { port: c.port(1) }), "The attribute 'owner' already exists", 3);
    expect((await c.dogOk(['vdi', 'getattr', 'vm', 'owner'], { port: c.port(2) })).out).toBe('alice');
    // Without -x a value is replaced.
    await c.dogOk(['vdi', 'setattr', 'vm', 'owner', 'carol'], { port: c.port(1) });
    expect((await c.dogOk(['vdi', 'getattr', 'vm', 'owner'], { port: c.port(0) })).out).toBe('carol');
    await c.dogOk(['vdi', 'setattr', '-d', 'vm', 'owner'], { port: c.port(2) });
    expectOneLineFailure(await c.dog(['vdi', 'getattr', 'vm', 'owner'], { port: c.port(1) }), "Attribute 'owner' not found", 5);
    expectOneLineFailure(await c.dog(['vdi', 'setattr', '-d', 'vm', 'owner'], { port: c.port(0) }), "Attribute 'owner' not found", 5);
  });

  it('refuses a missing VDI, a missing key and an oversized value in one line', async () => {
    expectOneLineFailure(await c.dog(['vdi', 'getattr', 'nope', 'k']), 'VDI not found', 5);
    expectOneLineFailure(await c.dog(['vdi', 'setattr', 'nope', 'k', 'v']), 'VDI not found', 5);
    expectOneLineFailure(await c.dog(['vdi', 'getattr', 'vm']), 'Please specify the attribute key', 64);
    expectOneLineFailure(await c.dog(['vdi', 'setattr', 'vm', 'big'], { input: Buffer.alloc(64 * 1024 + 1, 97) }), 'Failed to set attribute: the value is over 65536 bytes');
    expectOneLineFailure(await c.dog(['vdi', 'getattr', 'vm', 'big'], { port: c.port(1) }), "Attribute 'big' not found", 5);
  });

  it('of concurrent setattr -x on every node exactly one wins', async () => {
    for (let round = 0; round < 3; round++) {
      const key = `race${round}`;
      const runs = await Promise.all(
        Array.from({ length: 6 }, (_, k) => dog(['vdi', 'setattr', '-x', 'vm', key, `writer${k}`], { port: c.port(k % 3) })),
      );
      const winners = runs.map((r, k) => (r.code === 0 ? k : -1)).filter((k) => k >= 0);
      expect(winners, runs.map((r) => r.stderr).join('')).toHaveLength(1);
      for (const [k, r] of runs.entries()) if (k !== winners[0]) expectOneLineFailure(r, `The attribute '${key}' already exists`, 3);
      for (const i of [0, 1, 2]) expect((await c.dogOk(['vdi', 'getattr', 'vm', key], { port: c.port(i) })).out).toBe(`writer${winners[0]}`);
    }
  });

  it('survives a restart of the whole cluster', async () => {
    await c.dogOk(['vdi', 'setattr', 'vm', 'kept', 'yes']);
    await c.dogOk(['cluster', 'shutdown']);
    await Promise.all([0, 1, 2].map((i) => c.exited(i)));
    await c.startAll([0, 1, 2], 'at once');
    await poll('running', async () => (await c.status(2)) === 'running, auto-recovery enabled', 20_000);
    expect((await c.dogOk(['vdi', 'getattr', 'vm', 'kept'], { port: c.port(2) })).out).toBe('yes');
    expect((await c.dogOk(['vdi', 'getattr', 'vm', 'blob'], { port: c.port(1) })).stdout.length).toBe(6);
  });

  it('has --help', async () => {
    const help = await c.dogOk(['vdi', 'setattr', '--help']);
    expect(help.out).toMatch(/^Usage: dog vdi setattr \[options\] <NAME> \[KEY\] \[VALUE\]/);
    expect(help.out).toContain('-x, --exclusive');
    expect((await c.dogOk(['vdi', 'getattr', '--help'])).out).toMatch(/^Usage: dog vdi getattr \[options\] <NAME> \[KEY\]/);
  });
});

describe('alter-copy', () => {
  let c: Cluster;
  const data = pattern(24 * MiB, 7);
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 2, basePort: 8510, prefix: 'dog-copies-' });
    await c.dogOk(['vdi', 'create', 'disk', '32M']);
    await c.dogOk(['vdi', 'write', 'disk', '0', String(data.length)], { input: data });
    await c.dogOk(['vdi', 'create', 'other', '8M']);
    await c.dogOk(['vdi', 'write', 'other'], { input: pattern(8 * MiB, 8) });
  });
  afterAll(async () => {
    await c?.stop();
  });

  /** Copies of a VDI's objects per `dog vdi object location`, through sheep i. */
  async function locationCopies(name: string, index: number, i: number): Promise<{ copies: number; holders: number }> {
    const text = (await c.dogOk(['vdi', 'object', 'location', name, '-i', String(index)], { port: c.port(i) })).out;
    return { copies: Number(/, (\d+) copies\)/.exec(text)![1]), holders: text.split('\n').filter((l) => l.endsWith(' has the object')).length };
  }

  it('raises one VDI to 3 copies and trims it back to 1, data intact', async () => {
    const vid = (await c.dogOk(['vdi', 'list', '-r'])).out.split('\n').find((l) => l.split(' ')[1] === 'disk')!.split(' ')[7]!;
    const copiesOf = (oid: string) => (oid.slice(2, 8).replace(/^0+/, '') === vid ? want : 2);
    let want = 3;
    const raised = await c.dogOk(['vdi', 'alter-copy', '-f', '-c', '3', 'disk'], { port: c.port(1) });
    expect(raised.out).toBe("disk's redundancy level is set to 3, the old one was 2.\n");
    await c.waitForFullCopies([0, 1, 2], copiesOf);
    expect(await locationCopies('disk', 2, 2)).toEqual({ copies: 3, holders: 3 });
    expect(await locationCopies('other', 0, 2)).toEqual({ copies: 2, holders: 2 });
    expect((await c.dogOk(['vdi', 'list', '-r'], { port: c.port(2) })).out).toMatch(/^= disk 0 33554432 \d+ 0 \d+ [0-9a-f]+ 3 {2}22$/m);
    want = 1;
    await c.dogOk(['vdi', 'alter-copy', '-f', '-c', '1', 'disk'], { port: c.port(2) });
    await c.waitForFullCopies([0, 1, 2], copiesOf);
    expect(await locationCopies('disk', 5, 0)).toEqual({ copies: 1, holders: 1 });
    expect(md5((await c.dogOk(['vdi', 'read', 'disk', '0', String(data.length)], { port: c.port(1) })).stdout)).toBe(md5(data));
  });

  it("refuses the same level, a VDI with snapshots, a missing VDI, as the original", async () => {
    expectOneLineFailure(await c.dog(['vdi', 'alter-copy', '-f', '-c', '1', 'disk']), "disk's redundancy level is already set to 1, nothing changed.");
    await c.dogOk(['vdi', 'snapshot', '-s', 'snap', 'other']);
    expectOneLineFailure(await c.dog(['vdi', 'alter-copy', '-f', '-c', '3', 'other']), 'Only standalone vdi supports changing redundancy level.');
    expectOneLineFailure(await c.dog(['vdi', 'alter-copy', '-f', '-c', '3', 'nope']), "Reading nope's vdi object failure.");
    const invalid = await c.dog(['vdi', 'alter-copy', '-f', '-c', '99', 'disk']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toBe(
      'Invalid parameter 99\nTo create replicated vdi, set -c x\n  x(1 to 31)   - number of replicated copies\n' +
        'To create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  y(1 to 15)   - number of parity strips\n',
    );
  });

  it('asks before more copies than nodes and before the change', async () => {
    const asked = await c.dog(['vdi', 'alter-copy', '-c', '4', 'disk'], { input: Buffer.from('no\n') });
    expect(asked.out).toBe('Number of copies (4) is larger than number of nodes (3).\nAre you sure you want to continue? [yes/no]: ');
    // Declined: the original's confirm() ends the command there, silently, with exit 0.
    expect(asked.stderr).toBe('');
    expect(asked.code).toBe(0);
  });

  it('cluster alter-copy changes every VDI and the default for new ones', async () => {
    const result = await c.dogOk(['cluster', 'alter-copy', '-f', '-c', '3'], { port: c.port(2) });
    expect(result.out).toBe("The cluster's redundancy level is set to 3, the old one was 2.\n");
    await c.waitForFullCopies([0, 1, 2], 3);
    await c.dogOk(['vdi', 'create', 'fresh', '4M'], { port: c.port(1) });
    const rows = (await c.dogOk(['vdi', 'list', '-r'], { port: c.port(0) })).out.split('\n').filter(Boolean);
    expect(rows.map((r) => `${r.split(' ')[1]} ${r.split(' ')[8]}`).sort()).toEqual(['disk 3', 'fresh 3', 'other 3', 'other 3']);
    expect(md5((await c.dogOk(['vdi', 'read', 'disk', '0', String(data.length)], { port: c.port(0) })).stdout)).toBe(md5(data));
  });

  it('cluster format of a formatted cluster asks, then empties every store; -f does not ask', async () => {
    const before = (await c.dogOk(['vdi', 'list', '-r'])).out;
    const asked = await c.dog(['cluster', 'format', '-c', '2'], { input: Buffer.from('no\n'), port: c.port(1) });
    expect(asked.out).toBe("    __\n   ()'`;\n   /\\|`\n  /  |   Caution! The cluster is not empty.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ");
    expect(asked.stderr).toBe('');
    expect(asked.code).toBe(0);
    expect((await c.dogOk(['vdi', 'list', '-r'], { port: c.port(2) })).out).toBe(before);
    const created = (await c.dogOk(['cluster', 'info', '-r'])).out;
    expect((await c.dogOk(['cluster', 'format', '-f', '-c', '2'], { port: c.port(1) })).out).toBe('using backend plain store\n');
    expect((await c.dogOk(['vdi', 'list', '-r'], { port: c.port(2) })).out).toBe('');
    expect(c.allObjects().size).toBe(0);
    expect((await c.dogOk(['cluster', 'info', '-r'], { port: c.port(0) })).out.split('\n')[2]).not.toBe(created.split('\n')[2]);
    // The same name gets the same VID again: it must read zeros, not the old data.
    await c.dogOk(['vdi', 'create', 'disk', '32M'], { port: c.port(2) });
    expect((await c.dogOk(['vdi', 'read', 'disk', '0', String(4 * MiB)], { port: c.port(0) })).stdout.equals(Buffer.alloc(4 * MiB))).toBe(true);
    expect((await c.dogOk(['vdi', 'list', '-r'])).out).toMatch(/^= disk 0 33554432 0 0 \d+ [0-9a-f]+ 2 {2}22\n$/);
    await c.dogOk(['vdi', 'delete', 'disk']);
    // Formatted but without VDIs: no question, as the original.
    expect((await c.dogOk(['cluster', 'format', '-c', '3'])).out).toBe('using backend plain store\n');
    expect((await c.dogOk(['cluster', 'format', '--help'])).out).toContain('-f, --force');
  });

  it('node vnodes set, on a cluster formatted with -V, changes the ring with a new epoch; data stays', async () => {
    expectOneLineFailure(
      await c.dog(['node', 'vnodes', 'set', '64']),
      "Failed to execute request: the cluster was not formatted with -V (fixed vnodes): its vnodes are automatic (dog cluster reweight)",
    );
    expectOneLineFailure(await c.dog(['node', 'vnodes', 'set', '0']), "Invalid number of vnodes '0': must be an integer between 1 and 65535", 64);
    await c.dogOk(['cluster', 'format', '-f', '-V', '-c', '2']);
    await c.dogOk(['vdi', 'create', 'ring', '32M']);
    const bytes = pattern(32 * MiB, 21);
    await c.dogOk(['vdi', 'write', 'ring'], { input: bytes });
    const epochs = (await c.epochHistory(0)).length;
    await c.dogOk(['node', 'vnodes', 'set', '256'], { port: c.port(1) });
    const list = (await c.dogOk(['node', 'list'], { port: c.port(2) })).out;
    expect(list).toBe(
      '  Id   Host:Port         V-Nodes       Zone\n' +
        [0, 1, 2].map((i) => `${String(i).padStart(4)}   ${c.nodeId(i).padEnd(20)}\t${String(i === 1 ? 256 : 128).padStart(2)}${String(i).padStart(11)}\n`).join(''),
    );
    expect((await c.epochHistory(2)).length).toBe(epochs + 1);
    await c.waitForFullCopies([0, 1, 2], 2);
    expect(md5((await c.dogOk(['vdi', 'read', 'ring'], { port: c.port(0) })).stdout)).toBe(md5(bytes));
  });
});

describe('backup and restore', () => {
  let c: Cluster;
  let dir: string;
  const base = pattern(128 * MiB, 11);
  const overwrite = pattern(32 * MiB, 12);
  const fresh = pattern(32 * MiB, 13);
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 2, basePort: 8520, prefix: 'dog-backup-' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dog-backup-files-'));
    await c.dogOk(['vdi', 'create', 'vm', '1G']);
    await c.dogOk(['vdi', 'write', 'vm', '0', String(base.length)], { input: base });
    await c.dogOk(['vdi', 'snapshot', '-s', 'base', 'vm']);
    // 64 MiB changed: 32 MiB over objects the snapshot has, 32 MiB where it has none.
    await c.dogOk(['vdi', 'write', 'vm', String(64 * MiB), String(overwrite.length)], { input: overwrite });
    await c.dogOk(['vdi', 'write', 'vm', String(700 * MiB), String(fresh.length)], { input: fresh });
    await c.dogOk(['vdi', 'snapshot', '-s', 'next', 'vm']);
  });
  afterAll(async () => {
    await c?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** `bash -c SCRIPT` with dog on PATH as `dog`; stdout and stderr as text. */
  function sh(script: string): Promise<ProcessResult> {
    return run('bash', ['-c', `dog() { "${process.execPath}" "${dogBin}" "$@"; }; ${script}`]);
  }

  /** md5 of the whole VDI (or snapshot) read through sheep i, without holding it in memory. */
  async function vdiMd5(i: number, name: string, snapshot?: string): Promise<string> {
    const result = await sh(`set -o pipefail; dog vdi read ${snapshot ? `-s ${snapshot} ` : ''}${name} -p ${c.port(i)} | md5sum`);
    expect(result.code, result.stderr).toBe(0);
    return result.stdout.split(' ')[0]!;
  }

  /** Everything a restore could change: the VDI list and the working VDI's content. */
  async function state(i: number): Promise<string> {
    return `${maskRawVdiList((await c.dogOk(['vdi', 'list', '-r'], { port: c.port(i) })).out)}${await vdiMd5(i, 'vm')}`;
  }

  it('streams only the 64 MiB that changed, and restore reproduces the snapshot through another node', async () => {
    const file = path.join(dir, 'inc');
    const made = await sh(`dog vdi backup -F base -s next vm -p ${c.port(0)} > ${file}`);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toBe(''); // no progress into a pipe or file
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThanOrEqual(64 * MiB);
    expect(size).toBeLessThan(64 * MiB + 64 * 1024);
    const next = await vdiMd5(2, 'vm', 'next');
    // The working VDI moves on, then is restored to base + the stream, through another node.
    await c.dogOk(['vdi', 'write', 'vm', String(300 * MiB), String(8 * MiB)], { input: pattern(8 * MiB, 14) });
    const before = await vdiMd5(0, 'vm');
    const restored = await sh(`dog vdi restore -s base vm -p ${c.port(1)} < ${file}`);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout + restored.stderr).toBe('');
    expect(await vdiMd5(2, 'vm')).toBe(next);
    // The working VDI as it was is kept as an untagged snapshot (id 3), as the original did.
    expect(await vdiMd5(0, 'vm', '3')).toBe(before);
    const list = maskDates((await c.dogOk(['vdi', 'list'], { port: c.port(2) })).out);
    expect(list.split('\n').filter((l) => / vm /.test(l)).map((l) => l.slice(0, 16))).toEqual(['s vm           1', 's vm           2', 's vm           3', '  vm           0']);
  });

  it('shows progress on a terminal (bytes, rate, ETA), and refuses to write the stream to one', async () => {
    const dogLine = `"${process.execPath}" "${dogBin}"`;
    const file = path.join(dir, 'inc-tty');
    const shown = await run('script', ['-qec', `${dogLine} vdi backup -F base -s next vm -p ${c.port(0)} > ${file}`, '/dev/null']);
    expect(shown.code, shown.stdout).toBe(0);
    expect(shown.stdout).toMatch(/backup: 64 MB \/ 64 MB {2}[\d.]+ MB\/s {2}ETA 0:00\r?\n$/);
    expect(fs.readFileSync(file).equals(fs.readFileSync(path.join(dir, 'inc')))).toBe(true);
    const refused = await run('script', ['-qec', `${dogLine} vdi backup -s base vm -p ${c.port(0)}`, '/dev/null']);
    expect(refused.stdout.trimEnd()).toBe('The backup stream is binary: redirect stdout to a file or a pipe');
  });

  it('a whole-snapshot stream holds only allocated data, and restores exactly, holes included', async () => {
    const file = path.join(dir, 'full');
    expect((await sh(`dog vdi backup -s base vm -p ${c.port(2)} > ${file}`)).code).toBe(0);
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThanOrEqual(128 * MiB);
    expect(size).toBeLessThan(128 * MiB + 64 * 1024);
    // Restored onto `next`, which has data base has not (at 700 MiB): that becomes a hole again.
    const restored = await sh(`cat ${file} | dog vdi restore -s next vm -p ${c.port(0)}`);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await vdiMd5(1, 'vm')).toBe(await vdiMd5(1, 'vm', 'base'));
    const extents = (await c.dogOk(['vdi', 'read', 'vm', String(700 * MiB), String(4 * MiB)], { port: c.port(2) })).stdout;
    expect(extents.equals(Buffer.alloc(4 * MiB))).toBe(true);
  });

  it('refuses a truncated, altered or foreign stream with nothing changed', async () => {
    const file = path.join(dir, 'inc');
    const good = fs.readFileSync(file);
    const cases: Array<[string, Buffer, RegExp]> = [
      ['truncated', good.subarray(0, good.length - 1000), /^The backup stream is refused, nothing was changed: it is truncated: it ends after \d+ bytes, inside its records$/],
      ['altered', Buffer.concat([good.subarray(0, 40 * MiB), Buffer.from([good[40 * MiB]! ^ 1]), good.subarray(40 * MiB + 1)]), /^The backup stream is refused, nothing was changed: the SHA-256 checksum does not match$/],
      ['foreign', pattern(MiB, 99), /^The backup stream is refused, nothing was changed: it is not a dog vdi backup stream \(no SDOGBKUP magic\)$/],
      ['empty', Buffer.alloc(0), /^The backup stream is refused, nothing was changed: it is truncated: it ends after 0 bytes, inside its header$/],
    ];
    const before = await state(1);
    for (const [what, bytes, message] of cases) {
      const bad = path.join(dir, what);
      fs.writeFileSync(bad, bytes);
      for (const how of [`< ${bad}`, `< <(cat ${bad})`]) {
        const result = await sh(`dog vdi restore -s base vm -p ${c.port(0)} ${how}`);
        expect(result.code, `${what} ${how}`).toBe(2);
        expect(result.stdout).toBe('');
        expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
        expect(result.stderr.trimEnd()).toMatch(message);
      }
    }
    expect(await state(2)).toBe(before);
    expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('dog-restore-'))).toEqual([]);
  });

  it('refuses bad arguments in one line', async () => {
    expectOneLineFailure(await c.dog(['vdi', 'backup', 'vm'], { input: Buffer.alloc(0) }), "Please specify the snapshot to back up with the '-s' option", 64);
    const missing = await sh(`dog vdi backup -s nosuch vm -p ${c.port(0)} > /dev/null`);
    expect(missing.stderr).toBe("Snapshot ID 0 or tag nosuch doesn't exist\n");
    expect(missing.code).toBe(1);
    expectOneLineFailure(await c.dog(['vdi', 'restore', 'vm']), "We can restore a backup file only to snapshots: please specify the '-s' option", 64);
    expectOneLineFailure(await c.dog(['vdi', 'restore', '-s', '9', 'vm']), "Snapshot ID 9 or tag  doesn't exist", 1);
    expect((await c.dogOk(['vdi', 'backup', '--help'])).out).toContain('-F, --from <FROM>');
    expect((await c.dogOk(['vdi', 'restore', '--help'])).out).toMatch(/^Usage: dog vdi restore \[options\] <NAME>/);
  });
});

describe('locks, and -f / -R', () => {
  let c: Cluster;
  const nbdPort = (i: number) => 10500 + i;
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 2, basePort: 8530, prefix: 'dog-locks-', sheepArgs: (i) => ['--nbd', `127.0.0.1:${nbdPort(i)}`] });
    await c.dogOk(['vdi', 'create', 'vm', '64M']);
  });
  afterAll(async () => {
    await c?.stop();
  });

  async function lockList(i: number, raw = false): Promise<string> {
    return maskDates((await c.dogOk(['vdi', 'lock', 'list', ...(raw ? ['-r'] : [])], { port: c.port(i) })).out);
  }
  const header = '  Name        Node                  Since             Lock       Client\n';
  const row = (node: number, lock: string) =>
    new RegExp(`^  vm {10}127\\.0\\.0\\.1:${c.port(node)} {8}YYYY-MM-DD HH:MM  ${lock.padEnd(10)} nbd 127\\.0\\.0\\.1:\\d+$`);
  async function unlocked(): Promise<void> {
    await poll('no locks', async () => (await lockList(1)) === header, 10_000);
  }

  it('shows an NBD writer, refuses a writer through another node, lets one through the same node', async () => {
    const first = await rawNbdOpen(nbdPort(0), 'vm');
    const list = (await lockList(2)).split('\n');
    expect(list[0]! + '\n').toBe(header);
    expect(list[1]).toMatch(row(0, 'exclusive'));
    expect(list.slice(2)).toEqual(['']);
    expect((await lockList(1, true)).trimEnd()).toMatch(new RegExp(`^vm 127\\.0\\.0\\.1:${c.port(0)} \\d+ exclusive nbd 127\\.0\\.0\\.1:\\d+$`));
    await expect(rawNbdOpen(nbdPort(1), 'vm')).rejects.toThrow();
    // libnbd shows the server's text of a refusal in its debug output.
    const info = await run('env', ['LIBNBD_DEBUG=1', 'nbdinfo', `nbd://127.0.0.1:${nbdPort(1)}/vm`]);
    expect(info.code).not.toBe(0);
    expect(info.stderr).toMatch(new RegExp(`VDI vm is locked by nbd 127\\.0\\.0\\.1:\\d+ through 127\\.0\\.0\\.1:${c.port(0)}: open it shared from every node, or free it with 'dog vdi lock unlock vm'`));
    const format = await c.dog(['cluster', 'format', '-f'], { port: c.port(2) });
    expect(format.stderr).toMatch(new RegExp(`^Format failed: VDI vm is open for writing by nbd 127\\.0\\.0\\.1:\\d+ through 127\\.0\\.0\\.1:${c.port(0)}: stop its writers first \\(dog vdi lock list\\)\n$`));
    expect(format.code).toBe(1);
    // NBD multi-conn: a second connection through the same node writes as well.
    const second = await rawNbdOpen(nbdPort(0), 'vm');
    expect(await second.write(0, Buffer.alloc(4096, 5))).toBe(0);
    first.close();
    second.close();
    await unlocked();
    const now = await rawNbdOpen(nbdPort(1), 'vm');
    expect(await now.write(4096, Buffer.alloc(4096, 6))).toBe(0);
    now.close();
    await unlocked();
    const data = (await c.dogOk(['vdi', 'read', 'vm', '0', '8192'], { port: c.port(2) })).stdout;
    expect(data.equals(Buffer.concat([Buffer.alloc(4096, 5), Buffer.alloc(4096, 6)]))).toBe(true);
  });

  it('lets writers through two nodes share a VDI opened shared, and only them', async () => {
    const a = await rawNbdOpen(nbdPort(0), 'vm/shared');
    const b = await rawNbdOpen(nbdPort(1), 'vm/shared');
    const rows = (await lockList(2)).split('\n').slice(1, 3);
    expect(rows.map((r) => (row(0, 'shared').test(r) ? 0 : row(1, 'shared').test(r) ? 1 : r)).sort()).toEqual([0, 1]);
    await expect(rawNbdOpen(nbdPort(2), 'vm')).rejects.toThrow();
    expect(await b.write(8192, Buffer.alloc(512, 7))).toBe(0);
    a.close();
    b.close();
    await unlocked();
  });

  it('keeps the lock of a writer whose sheep died until `lock unlock`, as the original', async () => {
    const held = await rawNbdOpen(nbdPort(2), 'vm');
    await c.kill(2);
    held.close();
    await c.waitForMembers();
    expect((await lockList(0)).split('\n')[1]).toMatch(row(2, 'exclusive'));
    await expect(rawNbdOpen(nbdPort(0), 'vm')).rejects.toThrow();
    expect((await c.dogOk(['vdi', 'lock', 'unlock', 'vm'], { port: c.port(1) })).out).toBe('');
    expect(await lockList(0)).toBe(header);
    const after = await rawNbdOpen(nbdPort(0), 'vm');
    after.close();
    await unlocked();
    expectOneLineFailure(await c.dog(['vdi', 'lock', 'unlock', 'vm']), 'VDI vm is not locked', 1);
    expectOneLineFailure(await c.dog(['vdi', 'lock', 'unlock', 'nope']), 'Failed to find VDI nope: No VDI found', 1);
    expectOneLineFailure(await c.dog(['vdi', 'lock', 'unlock']), 'VDI name must be specified', 64);
    // A group's --help lists its commands, as `dog vdi --help` does; each command has its own.
    expect((await c.dogOk(['vdi', 'lock', '--help'])).out).toBe('Available vdi lock commands:\n  vdi lock list\n  vdi lock unlock\n');
    expect((await c.dogOk(['vdi', 'lock', 'list', '--help'])).out).toMatch(/^Usage: dog vdi lock list \[options\]\n\nlist locked VDIs\n/);
    expect((await c.dogOk(['vdi', 'lock', 'unlock', '--help'])).out).toMatch(/^Usage: dog vdi lock unlock \[options\] \[NAME\]\n/);
  });

  it('shows a sheepfs mount as a writer; --shared mounts share; a killed sheepfs leaves its lock to `lock unlock`', async () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'dog-locks-mnt-'));
    const mount = async (extra: string[]) => {
      const child = spawn(process.execPath, [sheepfsBin, '-f', '-p', String(c.port(0)), '--log', `${mnt}.log`, ...extra, mnt], { stdio: 'ignore' });
      expect(await waitFor(() => isMounted(mnt), 20_000)).toBe(true);
      return child;
    };
    const bash = (command: string) => run('bash', ['-c', command], { timeoutMs: 30_000 });
    const sheepfsRow = (lock: string) => new RegExp(`^  vm {10}127\\.0\\.0\\.1:${c.port(0)} {8}YYYY-MM-DD HH:MM  ${lock.padEnd(10)} sheepfs \\S+ pid \\d+ on ${mnt}$`);
    try {
      let sheepfs = await mount([]);
      expect((await bash(`echo vm > ${mnt}/vdi/mount`)).code).toBe(0);
      expect((await lockList(1)).split('\n')[1]).toMatch(sheepfsRow('exclusive'));
      await expect(rawNbdOpen(nbdPort(1), 'vm')).rejects.toThrow();
      expect((await bash(`echo vm > ${mnt}/vdi/unmount`)).code).toBe(0);
      await unlocked();
      sheepfs.kill('SIGTERM');
      expect(await waitFor(() => !isMounted(mnt), 10_000)).toBe(true);

      sheepfs = await mount(['--shared']);
      expect((await bash(`echo vm > ${mnt}/vdi/mount`)).code).toBe(0);
      const nbd = await rawNbdOpen(nbdPort(1), 'vm/shared');
      expect(await nbd.write(0, Buffer.alloc(512, 3))).toBe(0);
      nbd.close();
      // A sheepfs killed with the VDI mounted cannot free its lock: it stays, shown, until unlocked.
      sheepfs.kill('SIGKILL');
      forceUnmount(mnt);
      await poll('the NBD lock gone', async () => (await lockList(1)).split('\n').length === 3, 10_000);
      expect((await lockList(1)).split('\n')[1]).toMatch(sheepfsRow('shared'));
      await expect(rawNbdOpen(nbdPort(1), 'vm')).rejects.toThrow();
      await c.dogOk(['vdi', 'lock', 'unlock', 'vm'], { port: c.port(1) });
      expect(await lockList(0)).toBe(header);
    } finally {
      forceUnmount(mnt);
      fs.rmSync(mnt, { recursive: true, force: true });
      fs.rmSync(`${mnt}.log`, { force: true });
    }
  });

  it('vdi snapshot -R skips a snapshot identical to the previous one', async () => {
    const snapshots = async () => (await c.dogOk(['vdi', 'list', '-r'], { port: c.port(1) })).out.split('\n').filter((l) => l.startsWith('s vm ')).length;
    await c.dogOk(['vdi', 'snapshot', '-R', '-s', 'one', 'vm']);
    expect(await snapshots()).toBe(1);
    expect((await c.dogOk(['vdi', 'snapshot', '-R', '-s', 'two', 'vm'])).out).toBe('');
    expect(await snapshots()).toBe(1);
    await c.dogOk(['vdi', 'write', 'vm', '0', '512'], { input: Buffer.alloc(512, 9) });
    await c.dogOk(['vdi', 'snapshot', '-R', '-s', 'two', 'vm'], { port: c.port(1) });
    expect(await snapshots()).toBe(2);
    // Without -R an identical snapshot is taken, as before.
    await c.dogOk(['vdi', 'snapshot', '-s', 'three', 'vm']);
    expect(await snapshots()).toBe(3);
  });

  it('vdi rollback -f and cluster recover -f do not ask; -y stays as the old name', async () => {
    await c.dogOk(['vdi', 'write', 'vm', '0', '512'], { input: Buffer.alloc(512, 1) });
    expect((await c.dogOk(['vdi', 'rollback', '-f', '-s', 'one', 'vm'])).out).toBe('');
    const one = (await c.dogOk(['vdi', 'read', '-s', 'one', 'vm', '0', '8192'])).stdout;
    expect(one.equals(Buffer.alloc(8192, 9))).toBe(false);
    expect((await c.dogOk(['vdi', 'read', 'vm', '0', '8192'], { port: c.port(1) })).stdout.equals(one)).toBe(true);
    expect((await c.dogOk(['vdi', 'rollback', '-y', '-s', 'two', 'vm'])).out).toBe('');
    expect((await c.dogOk(['vdi', 'read', 'vm', '0', '512'], { port: c.port(1) })).stdout.equals(Buffer.alloc(512, 9))).toBe(true);
    const help = (await c.dogOk(['vdi', 'rollback', '--help'])).out;
    expect(help).toContain('-f, --force');
    expect(help).not.toContain('--yes');
    expect((await c.dogOk(['cluster', 'recover', '--help'])).out).toContain('-f, --force');
    expectOneLineFailure(await c.dog(['cluster', 'recover', '-f', 'force']), 'failed to execute request, Cluster is running/halted and cannot be force recovered');
    // A restore is refused while a writer holds the VDI, before anything changes.
    const stream = (await c.dogOk(['vdi', 'backup', '-s', 'one', 'vm'])).stdout;
    const writer = await rawNbdOpen(nbdPort(0), 'vm');
    const before = (await c.dogOk(['vdi', 'list', '-r'])).out;
    expectOneLineFailure(
      await c.dog(['vdi', 'restore', '-s', 'one', 'vm'], { input: stream, port: c.port(1) }),
      `VDI vm is open for writing by ${(await c.dogOk(['vdi', 'lock', 'list', '-r'])).out.split(' ').slice(4).join(' ').trimEnd()} through ${c.nodeId(0)}: stop its writers first (dog vdi lock list)`,
      1,
    );
    expect((await c.dogOk(['vdi', 'list', '-r'])).out).toBe(before);
    writer.close();
    await unlocked();
    expect((await c.dogOk(['vdi', 'restore', '-s', 'one', 'vm'], { input: stream, port: c.port(1) })).out).toBe('');
  });
});
