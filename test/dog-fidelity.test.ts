// dog's prompts, messages, ranges and refusals, word for word as the original (3ebe5ea dog/*.c,
// include/sheep.h), against real clusters on ports 8640-8649. Each case states stdout, stderr and
// the exit code exactly; "Usage:" cases check that the reason comes first, then the help.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recoverForcePrompt, rollbackPrompt } from '../src/cli/messages.js';
import { startCluster, type Cluster } from './support/cluster.js';
import { maskDates } from './support/mask.js';

const MiB = 1024 * 1024;
const sizeHint = 'You may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.';
const copiesHint = (text: string) =>
  `Invalid parameter ${text}\nTo create replicated vdi, set -c x\n  x(1 to 31)   - number of replicated copies\nTo create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  y(1 to 15)   - number of parity strips`;

let c: Cluster;

async function answer(args: string[], input?: string, port?: number): Promise<{ code: number | null; out: string; err: string }> {
  const result = await c.dog(args, { ...(input === undefined ? {} : { input: Buffer.from(input) }), ...(port === undefined ? {} : { port }) });
  return { code: result.code, out: result.out, err: result.stderr };
}

/** A failure with one message and nothing on stdout. */
const fails = (err: string, code = 1) => ({ code, out: '', err: `${err}\n` });

describe('on an unformatted cluster', () => {
  beforeAll(async () => {
    c = await startCluster({ nodes: 2, basePort: 8640, format: false, prefix: 'dog-fidelity-a-' });
  }, 120_000);
  afterAll(async () => c?.destroy());

  it('says the cluster waits to be formatted, as the original', async () => {
    expect(await answer(['cluster', 'info'])).toEqual({ code: 0, out: 'Cluster status: Waiting for cluster to be formatted\n\n', err: '' });
    expect(await answer(['cluster', 'info', '-r'])).toEqual({ code: 0, out: 'Waiting for cluster to be formatted\n\n', err: '' });
    expect(await answer(['vdi', 'create', 'x', '1G'])).toEqual(fails('Failed to create VDI x: Waiting for cluster to be formatted'));
    expect(await answer(['cluster', 'shutdown'])).toEqual(fails("Response's result: Waiting for cluster to be formatted\nfailed to execute request"));
  });

  it('refuses bad format options with the original words', async () => {
    expect(await answer(['cluster', 'format', '-z', '19'])).toEqual(fails('Object Size is larger than 2^20. Please set shift bit larger than 20'));
    expect(await answer(['cluster', 'format', '-z', '32'])).toEqual(fails('Object Size is limited to 2^31. Please set shift bit lower than 31'));
    expect(await answer(['cluster', 'format', '-c', '0'])).toEqual(fails(copiesHint('0')));
    expect(await answer(['cluster', 'format', '-b', 'tree'])).toEqual({
      code: 2,
      out: 'using backend tree store\nAvailable stores:\n---------------------------------------\nplain\n',
      err: 'Format failed: Targeted backend store is not found\n',
    });
    expect((await answer(['cluster', 'info'])).out).toBe('Cluster status: Waiting for cluster to be formatted\n\n');
  });
});

describe('on a running cluster', () => {
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 2, basePort: 8643, prefix: 'dog-fidelity-b-' });
    await c.dogOk(['vdi', 'create', 'test', '1G']);
    await c.dogOk(['vdi', 'write', 'test', '0', String(MiB)], { input: Buffer.alloc(MiB, 3) });
    await c.dogOk(['vdi', 'snapshot', '-s', 'snap1', 'test']);
  }, 120_000);
  afterAll(async () => c?.destroy());

  it('cluster info: -r without labels, -v with the store lines', async () => {
    const info = maskDates((await answer(['cluster', 'info', '-v'])).out).split('\n');
    expect(info.slice(0, 6)).toEqual([
      'Cluster status: running, auto-recovery enabled',
      'Cluster store: plain with 2 redundancy policy',
      'Cluster vnodes strategy: auto',
      'Cluster vnode mode: node',
      'Cluster created at Www Mmm DD HH:MM:SS YYYY',
      '',
    ]);
    const raw = (await answer(['cluster', 'info', '-r'])).out.split('\n');
    expect(raw.slice(0, 2)).toEqual(['running, auto-recovery enabled', '']);
    expect(raw[2]).toMatch(/^\d+ 1 \[127\.0\.0\.1:8643:128, 127\.0\.0\.1:8644:128, 127\.0\.0\.1:8645:128\]$/);
  });

  it('vdi create: sizes, copies and -v as the original', async () => {
    const missing = await answer(['vdi', 'create', 'x']);
    expect([missing.code, missing.out]).toEqual([64, '']);
    expect(missing.err).toMatch(/^Please specify the VDI size\nUsage: dog vdi create /);
    expect(await answer(['vdi', 'create', 'x', '1X'])).toEqual(fails(`Invalid size '1X'\n${sizeHint}`, 64));
    expect(await answer(['vdi', 'create', 'x', '5T'])).toEqual(
      fails("VDI size is larger than 4.0 TB bytes, please use '-y' to create a hyper volume with size up to 16 PB bytes or use '-z' to create larger object size volume", 64),
    );
    expect(await answer(['vdi', 'create', '-y', 'x', '17P'])).toEqual(fails('VDI size is too large', 64));
    expect(await answer(['vdi', 'create', '-c', '0', 'x', '1G'])).toEqual(fails(copiesHint('0')));
    expect(await answer(['vdi', 'create', '-c', 'abc', 'x', '1G'])).toEqual(fails(copiesHint('abc')));
    expect(await answer(['vdi', 'create', 'test', '1G'])).toEqual(fails('Failed to create VDI test: VDI exists already'));
    const created = await answer(['vdi', 'create', '-v', 'verbose', '1.5G']);
    expect(created).toEqual({ code: 0, out: expect.stringMatching(/^VDI ID of newly created VDI: [0-9a-f]+\n$/), err: '' });
    const vid = created.out.trim().split(' ').pop()!;
    expect((await answer(['vdi', 'list', '-r', 'verbose'])).out).toMatch(new RegExp(`^= verbose 0 ${1.5 * 1024 * MiB} 0 0 \\d+ ${vid} 2  22\n$`));
  });

  it('vdi snapshot, clone, rollback: the original refusals, prompt and -v lines', async () => {
    const numeric = await answer(['vdi', 'snapshot', '-s', '5', 'test']);
    expect([numeric.code, numeric.err.split('\n')[0]]).toEqual([64, 'Please specify a non-integer value for a snapshot tag name']);
    expect(await answer(['vdi', 'snapshot', 'missing'])).toEqual(fails('Failed to create snapshot for missing: No VDI found'));
    expect(await answer(['vdi', 'snapshot', '-s', 'snap1', 'test'])).toEqual(
      fails('Failed to create snapshot for test, maybe snapshot id (0) or tag (snap1) is existed'),
    );
    expect((await answer(['vdi', 'snapshot', '-v', '-s', 'snap2', 'test'])).out).toMatch(
      /^new VID of original VDI: [0-9a-f]+, VDI ID of newly created snapshot: [0-9a-f]+\n$/,
    );
    expect((await answer(['vdi', 'snapshot', '-v', '-r', '-s', 'snap3', 'test'])).out).toMatch(/^[0-9a-f]+ [0-9a-f]+\n$/);

    const noTarget = await answer(['vdi', 'clone', '-s', 'snap1', 'test']);
    expect([noTarget.code, noTarget.err.split('\n')[0]]).toEqual([64, 'Destination VDI name must be specified']);
    const noSnapshot = await answer(['vdi', 'clone', 'test', 'c1']);
    expect([noSnapshot.code, ...noSnapshot.err.split('\n').slice(0, 2)]).toEqual([64, 'Only snapshot VDIs can be cloned', "Please specify the '-s' option"]);
    expect((await answer(['vdi', 'clone', '-v', '-s', 'snap1', 'test', 'c1'])).out).toMatch(/^VDI ID of newly created clone: [0-9a-f]+\n$/);

    for (const command of ['rollback', 'read', 'delete', 'clone']) {
      expect(await answer(['vdi', command, '-s', '0', 'test', 'c2'].filter((a) => command === 'clone' || a !== 'c2'))).toEqual(
        fails('The snapshot id must be larger than zero'),
      );
    }
    const noS = await answer(['vdi', 'rollback', 'test']);
    expect([noS.code, noS.err.split('\n')[0]]).toEqual([64, "Please specify the '-s' option"]);
    const before = (await answer(['vdi', 'list', '-r', 'test'])).out;
    expect(await answer(['vdi', 'rollback', '-s', 'snap1', 'test'], 'no\n')).toEqual({ code: 0, out: rollbackPrompt, err: '' });
    expect(await answer(['vdi', 'rollback', '-s', 'snap1', 'test'], 'y\n')).toEqual({ code: 0, out: rollbackPrompt, err: '' });
    expect((await answer(['vdi', 'list', '-r', 'test'])).out).toBe(before);
    const rolled = await answer(['vdi', 'rollback', '-v', '-s', 'snap1', 'test'], 'YES\n');
    expect(rolled.out).toMatch(new RegExp(`^${rollbackPrompt.replace(/[.?[\]]/g, '\\$&')}New VDI ID of rollbacked VDI: [0-9a-f]+\n$`));
  });

  it('vdi resize, read, write: the original size and offset messages', async () => {
    const missing = await answer(['vdi', 'resize', 'test']);
    expect([missing.code, missing.err.split('\n')[0]]).toEqual([64, 'Please specify the new size for the VDI']);
    expect(await answer(['vdi', 'resize', 'test', '512M'])).toEqual(fails('Shrinking VDIs is not implemented', 64));
    expect(await answer(['vdi', 'resize', 'test', '5T'])).toEqual(fails("New VDI size is too large. This volume's max size is 4398046511104", 64));
    expect(await answer(['vdi', 'resize', 'test', '2x'])).toEqual(fails(`Invalid size '2x'\n${sizeHint}`, 64));
    expect(await answer(['vdi', 'read', 'test', '2G'])).toEqual(fails('Read offset is beyond the end of the VDI'));
    expect(await answer(['vdi', 'write', 'test', '2G'], 'x')).toEqual(fails('Write offset is beyond the end of the VDI'));
    expect(await answer(['vdi', 'read', 'test', 'abc'])).toEqual(fails(`Invalid size 'abc'\n${sizeHint}`, 64));
    // At the very end: nothing to read, as the original.
    expect(await answer(['vdi', 'read', 'test', '1G'])).toEqual({ code: 0, out: '', err: '' });
    expect((await c.dogOk(['vdi', 'read', 'test', '0.5K', '0.5k'])).stdout.equals(Buffer.alloc(512, 3))).toBe(true);
  });

  it('vdi object location: the inode form, an unallocated index, too large an index', async () => {
    const vid = /^= test 0 \d+ \d+ \d+ \d+ ([0-9a-f]+) /m.exec((await answer(['vdi', 'list', '-r', 'test'])).out)![1]!;
    const inode = (await answer(['vdi', 'object', 'location', 'test'])).out.split('\n');
    expect(inode.slice(0, 2)).toEqual([`Looking for the inode object 0x${vid} with 3 nodes`, '']);
    expect(inode.slice(2, 5).map((line) => line.replace(/ (has|doesn't have) the object$/, ''))).toEqual([c.nodeId(0), c.nodeId(1), c.nodeId(2)]);
    expect(inode.slice(5, 7)).toEqual(['', 'According to sheepdog algorithm, the object should be located at:']);
    expect(await answer(['vdi', 'object', 'location', '-i', '100', 'test'])).toEqual({
      code: 0,
      out: `The inode object 0x${vid} idx 100 is not allocated\n`,
      err: '',
    });
    expect(await answer(['vdi', 'object', 'location', '-i', '4294967296', 'test'])).toEqual(fails('The offset is too large!'));
    expect(await answer(['vdi', 'object', 'location', '-i', 'x', 'test'])).toEqual(
      fails('The index must be a decimal integer or a hexadecimal integer started with 0x'),
    );
    expect(await answer(['vdi', 'object', 'location', 'nosuch'])).toEqual(
      fails('Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\nFATAL: no inode objects'),
    );
  });

  it('node recovery throttle: the original ranges and output', async () => {
    expect(await answer(['node', 'recovery', 'get-throttle'])).toEqual({ code: 0, out: 'max (0), interval (0)\n', err: '' });
    expect(await answer(['node', 'recovery', 'set-throttle', '5'])).toEqual(fails('Invalid interval max (5), interval ((null))', 64));
    expect(await answer(['node', 'recovery', 'set-throttle', 'x', '5'])).toEqual(fails('Invalid max (x)', 64));
    expect(await answer(['node', 'recovery', 'set-throttle', '5', '-1'])).toEqual(expect.objectContaining({ code: 64 }));
    expect(await answer(['node', 'recovery', 'set-throttle', '4294967296', '5'])).toEqual(fails('Invalid max (4294967296)', 64));
    expect(await answer(['node', 'recovery', 'set-throttle', '0', '5'])).toEqual(fails('Invalid interval max (0), interval (5)', 64));
    expect(await answer(['node', 'recovery', 'set-throttle', '4294967295', '2000'])).toEqual({ code: 0, out: '', err: '' });
    expect((await answer(['node', 'recovery', 'get-throttle'], undefined, c.port(2))).out).toBe('max (4294967295), interval (2000)\n');
    expect(await answer(['node', 'recovery', 'set-throttle', '0', '0'])).toEqual({ code: 0, out: '', err: '' });
    expect((await answer(['node', 'recovery', 'get-throttle'], undefined, c.port(1))).out).toBe('max (0), interval (0)\n');
    expect(await answer(['node', 'recovery', '-r'])).toEqual({ code: 0, out: '', err: '' });
    expect(await answer(['node', 'recovery', 'info'])).toEqual({
      code: 0,
      out: 'Nodes In Recovery:\n  Id   Host:Port         V-Nodes       Zone       Progress\n',
      err: '',
    });
  });

  it('node kill and cluster recover force refuse as the original', async () => {
    expect(await answer(['node', 'kill'])).toEqual(fails('please specify -l option or node id', 64));
    expect(await answer(['node', 'kill', 'x'])).toEqual(fails("Invalid node id 'x', please specify a numeric value", 64));
    expect(await answer(['node', 'kill', '7'])).toEqual(fails("Invalid node id '7'", 64));
    expect(await answer(['node', 'kill', '-l', '1'])).toEqual(fails("don't use -l option and specify node id at the same time", 64));
    expect(await answer(['cluster', 'recover', 'force'], 'no\n')).toEqual({ code: 0, out: recoverForcePrompt, err: '' });
    expect(await answer(['cluster', 'recover', 'force'], 'yes\n')).toEqual({
      code: 1,
      out: recoverForcePrompt,
      err: 'failed to execute request, Cluster is running/halted and cannot be force recovered\n',
    });
    expect(c.live()).toEqual([0, 1, 2]);
  });

  it('vdi list -r escapes a name with spaces; vdi list while waiting for nodes prints what the original did', async () => {
    await c.dogOk(['vdi', 'create', 'a b\\c', '4M']);
    expect((await answer(['vdi', 'list', '-r', 'a b\\c'])).out).toMatch(/^= a\\ b\\\\c 0 4194304 0 0 \d+ [0-9a-f]+ 2  22\n$/);
    const vids = (await answer(['vdi', 'list', '-r'])).out
      .trimEnd()
      .split('\n')
      .map((line) => line.split(/(?<!\\) /))
      .map((fields) => Number.parseInt(fields[7]!, 16))
      .sort((x, y) => x - y);
    await c.dogOk(['cluster', 'shutdown']);
    for (const i of [0, 1, 2]) await c.exited(i);
    await c.start(0);
    await c.start(1);
    expect(await c.status(0)).toBe('Waiting for other nodes to join cluster');
    const waiting = await answer(['vdi', 'list']);
    expect(waiting).toEqual({
      code: 0,
      out: '  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift\n',
      err: vids
        .map((vid) => `Failed to read object 80${vid.toString(16).padStart(6, '0')}00000000 Waiting for other nodes to join cluster\nFailed to read inode header\n`)
        .join(''),
    });
  }, 60_000);
});

describe('on a cluster of gateways only', () => {
  beforeAll(async () => {
    c = await startCluster({ nodes: 2, copies: 1, basePort: 8647, prefix: 'dog-fidelity-c-', sheepArgs: () => ['-g'] });
  }, 120_000);
  afterAll(async () => c?.destroy());

  it('vdi create fails as the original: nothing can store the VDI', async () => {
    expect(await answer(['vdi', 'create', 'g', '1G'])).toEqual(fails('Failed to create VDI g: Failed to write to requested VDI'));
    expect((await answer(['vdi', 'list', '-r'], undefined, c.port(1))).out).toBe('');
  });
});
