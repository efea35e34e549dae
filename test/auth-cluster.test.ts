// Only the cluster's own get in, with real processes (ports 8200-8249): a local user without the
// key (`nobody`) or a dog with a wrong -k is refused in one line and changes nothing; a raw peer
// request with a wrong key or none is refused; the right key works; the key file is 0600 in every
// store; a sheep with another key cannot join, one without any is handed the cluster's.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatKey, parseKey } from '../src/engine/cluster-key.js';
import { keyIdOf } from '../src/rpc/auth.js';
import { encodeFrame, FrameDecoder, type Frame } from '../src/rpc/frame.js';
import { dogBin, md5, pattern, run, startCluster, type Cluster } from './support/cluster.js';
import { authenticatedSocket } from './support/raw-rpc.js';

const basePort = 8200;
const MiB = 1024 * 1024;

/**
 * `nobody` must be able to run dog from this checkout to be refused by the sheep, not by the file
 * system: a checkout under a 0700 directory (mktemp -d) gets search permission (o+x, never read)
 * on each directory above it. The files themselves are a checkout's 0644.
 */
function letNobodyReach(file: string): void {
  for (let dir = path.dirname(path.resolve(file)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const mode = fs.statSync(dir).mode;
    if ((mode & 0o001) === 0) fs.chmodSync(dir, (mode & 0o7777) | 0o001);
  }
}

/** `dog ARGS -p PORT` as the user `nobody`. */
function dogAsNobody(args: readonly string[], port: number) {
  letNobodyReach(dogBin);
  return run('runuser', ['-u', 'nobody', '--', process.execPath, dogBin, ...args, '-p', String(port)], { cwd: '/' });
}

/** Raw frames on a fresh socket; the frames answered until the sheep closes it (or 2 s pass). */
async function rawExchange(port: number, frames: Buffer[]): Promise<{ frames: Frame[]; closed: boolean }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  const decoder = new FrameDecoder();
  const got: Frame[] = [];
  socket.on('data', (chunk: Buffer) => got.push(...decoder.push(chunk)));
  socket.on('error', () => undefined);
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  for (const frame of frames) socket.write(frame);
  const verdict = await Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000))]);
  socket.destroy();
  return { frames: got, closed: verdict };
}

const frame = (header: object) => Buffer.concat(encodeFrame(header));

describe('the sheep port lets in only holders of the cluster key', () => {
  let c: Cluster;
  let data: Buffer;
  let wrongKey: string;

  beforeAll(async () => {
    c = await startCluster({ basePort, nodes: 3, copies: 3, prefix: 'sheep-auth-' });
    // Everyone may walk into the stores: only the key file's own mode keeps the key.
    fs.chmodSync(c.root, 0o755);
    await c.dogOk(['vdi', 'create', 'data', '16M']);
    data = pattern(8 * MiB, 12);
    await c.dogOk(['vdi', 'write', 'data', '0', String(data.length)], { input: data });
    wrongKey = path.join(c.root, 'wrong.key');
    fs.writeFileSync(wrongKey, formatKey(Buffer.alloc(32, 7)), { mode: 0o600 });
  }, 120_000);
  afterAll(async () => c?.stop());

  const state = async () => ({
    md5: md5((await c.dogOk(['vdi', 'read', 'data', '0', String(data.length)])).stdout),
    list: (await c.dogOk(['vdi', 'list', '-r'])).out,
    nodes: (await c.dogOk(['node', 'list', '-r'])).out,
    running: c.live(),
  });

  it('keeps one key, mode 0600, in every store', () => {
    const keys = [0, 1, 2].map((i) => {
      const file = path.join(c.storeDir(i), 'cluster.key');
      expect((fs.statSync(file).mode & 0o777).toString(8), file).toBe('600');
      return parseKey(fs.readFileSync(file));
    });
    expect(keys[0]).toBeDefined();
    expect(keys[1]).toEqual(keys[0]);
    expect(keys[2]).toEqual(keys[0]);
  });

  it('refuses nobody, in one line, for format, write, vdi delete and shutdown, and nothing changes', async () => {
    const before = await state();
    expect(before.md5).toBe(md5(data));
    const keyId = keyIdOf(parseKey(fs.readFileSync(path.join(c.storeDir(0), 'cluster.key')))!);
    const denied = `no key for this cluster (key id ${keyId}): cannot read key file ${path.join(c.storeDir(0), 'cluster.key')}: permission denied; give the cluster key file with -k FILE`;
    const attempts: Array<[string[], string]> = [
      [['cluster', 'format', '-c', '1'], `Format failed: cannot authenticate to 127.0.0.1:${c.port(0)}: ${denied}`],
      [['vdi', 'write', 'data', '0', '4096'], `cannot authenticate to 127.0.0.1:${c.port(0)}: ${denied}`],
      [['vdi', 'delete', 'data'], `cannot authenticate to 127.0.0.1:${c.port(0)}: ${denied}`],
      [['cluster', 'shutdown'], `cannot authenticate to 127.0.0.1:${c.port(0)}: ${denied}`],
      [['node', 'kill', '1'], `cannot authenticate to 127.0.0.1:${c.port(0)}: ${denied}`],
    ];
    for (const [args, message] of attempts) {
      const result = await dogAsNobody(args, c.port(0));
      expect({ args, code: result.code, stderr: result.stderr, stdout: result.stdout }).toEqual({ args, code: 1, stderr: `${message}\n`, stdout: '' });
    }
    expect(await state()).toEqual(before);
  }, 120_000);

  it('refuses a dog with a wrong -k in one line, and nothing changes; the right key works', async () => {
    const before = await state();
    const keyId = keyIdOf(parseKey(fs.readFileSync(path.join(c.storeDir(0), 'cluster.key')))!);
    const wrong = `cannot authenticate to 127.0.0.1:${c.port(1)}: the key in ${wrongKey} is not this cluster's (key id ${keyIdOf(Buffer.alloc(32, 7))}; the cluster's is ${keyId})`;
    for (const args of [['vdi', 'delete', 'data'], ['cluster', 'shutdown'], ['vdi', 'write', 'data', '0', '4096']]) {
      const result = await c.dog([...args, '-k', wrongKey], { port: c.port(1), input: Buffer.alloc(4096, 1) });
      expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 1, stderr: `${wrong}\n` });
    }
    // A key file others can read is no secret: refused before it is used.
    const open = path.join(c.root, 'open.key');
    fs.copyFileSync(path.join(c.storeDir(0), 'cluster.key'), open);
    fs.chmodSync(open, 0o644);
    const loose = await c.dog(['vdi', 'list', '-k', open], { port: c.port(1) });
    expect([loose.code, loose.stderr]).toEqual([1, `cannot authenticate to 127.0.0.1:${c.port(1)}: key file ${open} is open to group or others (mode 644): chmod 600 it\n`]);
    expect(await state()).toEqual(before);
    // The right key, given as an admin on another host would (a copy of a store's key file).
    const copy = path.join(c.root, 'admin.key');
    fs.copyFileSync(path.join(c.storeDir(2), 'cluster.key'), copy);
    fs.chmodSync(copy, 0o600);
    const right = await c.dog(['vdi', 'list', '-r', '-k', copy], { port: c.port(1) });
    expect([right.code, right.out]).toEqual([0, before.list]);
  }, 120_000);

  it('refuses a raw peer request without the key, or with a wrong one, and runs nothing', async () => {
    const location = await c.dogOk(['vdi', 'object', 'location', 'data', '0']);
    const oid = /object ([0-9a-f]{16})/.exec(location.out)![1]!;
    const holders = () => c.dogOk(['vdi', 'object', 'location', 'data', '0']).then((r) => r.out);
    const before = await holders();
    const remove = (id: number) => ({ id, op: 'peer.remove', oid, epoch: 1, from: '127.0.0.1:1' });

    // No handshake at all: an AUTH error for the request's id, and the connection closes.
    const bare = await rawExchange(c.port(0), [frame(remove(1))]);
    expect(bare.closed).toBe(true);
    expect(bare.frames.map((f) => [f.header['id'], f.header['ok'], f.header['code']])).toEqual([[1, false, 'AUTH']]);

    // A handshake with a made-up proof, the request right behind it: refused, closed.
    const hello = frame({ auth: 'hello', v: 1, nonce: Buffer.alloc(32, 1) });
    const forged = await rawExchange(c.port(0), [hello, frame({ auth: 'proof', proof: Buffer.alloc(32, 2) }), frame(remove(2))]);
    expect(forged.closed).toBe(true);
    expect(forged.frames.map((f) => f.header['auth'])).toEqual(['key', 'refused']);
    expect(forged.frames[1]!.header['message']).toBe('wrong cluster key');
    expect(await holders()).toBe(before);
    // Refusals are logged (rate-limited: the first of each 10 s, the rest counted).
    expect(c.log(0)).toContain('"msg":"refused a connection"');

    // With the key, the same raw peer request is served (here: does the object exist).
    const key = parseKey(fs.readFileSync(path.join(c.storeDir(0), 'cluster.key')))!;
    const socket = await authenticatedSocket(c.port(0), key);
    const epoch = (await c.ask(0, (client) => client.clusterInfo()))!.epochs[0]!.epoch;
    const answer = await socket.request({ op: 'peer.exists', oid, epoch, from: '127.0.0.1:1' });
    socket.close();
    expect(answer).toMatchObject({ ok: true, value: true });
  }, 120_000);

  it('does not let a sheep with another key join: one line, exit 1; a keyless one is handed the key', async () => {
    const refused = await c.startExpectExit(3, ['-k', wrongKey]);
    const keyId = keyIdOf(parseKey(fs.readFileSync(path.join(c.storeDir(0), 'cluster.key')))!);
    expect([refused.code, refused.stderr]).toEqual([
      1,
      `sheep: the cluster refused this node: the node holds another cluster key (key id ${keyIdOf(Buffer.alloc(32, 7))}; the cluster's is ${keyId})\n`,
    ]);
    expect(fs.existsSync(path.join(c.storeDir(3), 'cluster.key'))).toBe(false);
    expect((await c.dogOk(['node', 'list', '-r'])).out.split('\n').filter(Boolean)).toHaveLength(3);

    await c.start(3);
    const handed = path.join(c.storeDir(3), 'cluster.key');
    expect((fs.statSync(handed).mode & 0o777).toString(8)).toBe('600');
    expect(fs.readFileSync(handed)).toEqual(fs.readFileSync(path.join(c.storeDir(0), 'cluster.key')));
    // Its port, like every other, wants the key: nobody is refused there too.
    const result = await dogAsNobody(['vdi', 'list'], c.port(3));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^cannot authenticate to 127\.0\.0\.1:8203: no key for this cluster/);
    expect(result.stderr.split('\n')).toHaveLength(2);
  }, 120_000);
});

describe('before format', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ basePort: basePort + 10, nodes: 2, format: false, prefix: 'sheep-auth-unformatted-' });
  }, 120_000);
  afterAll(async () => c?.stop());

  it('serves anybody only what format needs, and format makes the key that then locks out nobody', async () => {
    const info = await dogAsNobody(['cluster', 'info'], c.port(0));
    expect([info.code, info.stdout]).toEqual([0, 'Cluster status: Waiting for cluster to be formatted\n\n']);
    const refused = await dogAsNobody(['vdi', 'create', 'x', '1G'], c.port(0));
    expect([refused.code, refused.stderr]).toEqual([1, 'Failed to create VDI x: Waiting for cluster to be formatted\n']);
    const shutdown = await dogAsNobody(['cluster', 'shutdown'], c.port(1));
    expect([shutdown.code, shutdown.stderr]).toEqual([1, "Response's result: Waiting for cluster to be formatted\nfailed to execute request\n"]);
    expect(c.live()).toEqual([0, 1]);
    expect(fs.existsSync(path.join(c.storeDir(0), 'cluster.key'))).toBe(false);

    // -k on format names a key no sheep holds: format would make another one. Refused, unformatted.
    const keyFile = path.join(c.root, 'mine.key');
    fs.writeFileSync(keyFile, formatKey(Buffer.alloc(32, 5)), { mode: 0o600 });
    const withKey = await c.dog(['cluster', 'format', '-c', '2', '-k', keyFile]);
    expect([withKey.code, withKey.stderr]).toEqual([
      1,
      `Format failed: the sheep holds no cluster key, so format would make a new one, not the one in ${keyFile}: start every sheep with -k ${keyFile}, or format without -k\n`,
    ]);
    expect((await c.dogOk(['cluster', 'info'])).out).toBe('Cluster status: Waiting for cluster to be formatted\n\n');

    await c.dogOk(['cluster', 'format', '-c', '2']);
    const after = await dogAsNobody(['cluster', 'info'], c.port(1));
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/^cannot authenticate to 127\.0\.0\.1:8211: no key for this cluster \(key id [0-9a-f]{16}\)/);
    // The driver's directory, which carried the key, is its owner's alone.
    const mode = fs.statSync(c.clusterDir).mode & 0o777;
    expect(mode.toString(8)).toBe('700');
    expect(execFileSync('stat', ['-c', '%a', path.join(c.clusterDir, 'events')]).toString().trim()).toBe('600');
  }, 120_000);
});

describe('a cluster whose sheep were given the key (-k) before format', () => {
  let c: Cluster;
  let keyFile: string;
  const key = Buffer.alloc(32, 0x5a);
  beforeAll(async () => {
    keyFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sheep-auth-key-')), 'admin.key');
    fs.writeFileSync(keyFile, formatKey(key), { mode: 0o600 });
    c = await startCluster({ basePort: basePort + 20, nodes: 2, format: false, prefix: 'sheep-auth-pre-', sheepArgs: () => ['-k', keyFile] });
  }, 120_000);
  afterAll(async () => {
    await c?.stop();
    fs.rmSync(path.dirname(keyFile), { recursive: true, force: true });
  });

  it('wants the key even for format, and keeps that key', async () => {
    const info = await dogAsNobody(['cluster', 'info'], c.port(0));
    expect(info.code).toBe(1);
    expect(info.stderr).toBe(
      `cannot authenticate to 127.0.0.1:8220: no key for this cluster (key id ${keyIdOf(key)}): cannot read key file ${path.join(c.storeDir(0), 'cluster.key')}: permission denied; give the cluster key file with -k FILE\n`,
    );
    const format = await dogAsNobody(['cluster', 'format', '-c', '1'], c.port(0));
    expect(format.code).toBe(1);
    expect((await c.dogOk(['cluster', 'info', '-k', keyFile])).out).toBe('Cluster status: Waiting for cluster to be formatted\n\n');
    await c.dogOk(['cluster', 'format', '-c', '2', '-k', keyFile]);
    for (const i of [0, 1]) expect(parseKey(fs.readFileSync(path.join(c.storeDir(i), 'cluster.key')))).toEqual(key);
    await c.dogOk(['vdi', 'create', 'v', '4M', '-k', keyFile], { port: c.port(1) });
    expect((await c.dogOk(['vdi', 'list', '-r'])).out).toMatch(/^= v /);
  }, 120_000);
});
