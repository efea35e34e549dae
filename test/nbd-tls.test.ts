// NBD STARTTLS against an in-process server (ephemeral ports): what a raw client sees byte by byte
// (FORCEDTLS refusals, the STARTTLS edge cases, TLS 1.2 and 1.3 PSK), real clients (nbdinfo and
// qemu-img over PSK and X.509, the latter with certificates made by openssl), bad and wrong
// credentials, and that the server goes on serving after each failure.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SdError } from '../src/engine/errors.js';
import * as c from '../src/nbd/constants.js';
import { prepareNbdTls, startNbdServer, type NbdServer } from '../src/nbd/index.js';
import { parsePskFile } from '../src/nbd/tls-credentials.js';
import { parseSheepOptions } from '../src/sheep/options.js';
import { MemoryVolumeProvider } from './support/memory-volume.js';
import { makeTlsFiles, type TlsFiles } from './support/tls-creds.js';

const mebibyte = 1024 * 1024;
const toolTimeoutMs = 30_000;
const closeTimeoutMs = 5_000;

// ---- a raw client that can move to TLS ----------------------------------------------------------

class RawClient {
  private buffered = Buffer.alloc(0);
  private waiter: { needBytes: number; wake: () => void } | null = null;
  private ended = false;
  private io: Duplex;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    this.io = socket;
    this.listen(socket);
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.waiter?.wake();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: '127.0.0.1', port }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    if (this.waiter && this.buffered.length >= this.waiter.needBytes) this.waiter.wake();
  };

  private listen(stream: Duplex): void {
    stream.on('data', this.onData);
  }

  async read(lengthBytes: number): Promise<Buffer> {
    while (this.buffered.length < lengthBytes) {
      if (this.ended) throw new Error('connection closed');
      await new Promise<void>((resolve) => {
        this.waiter = { needBytes: lengthBytes, wake: resolve };
      });
      this.waiter = null;
    }
    const out = this.buffered.subarray(0, lengthBytes);
    this.buffered = this.buffered.subarray(lengthBytes);
    return out;
  }

  write(...parts: Buffer[]): void {
    for (const part of parts) this.io.write(part);
  }

  /** The client side of the upgrade, after the server's NBD_REP_ACK. */
  async startTls(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
    expect(this.buffered.length).toBe(0);
    this.socket.off('data', this.onData);
    const secure = tls.connect({ socket: this.socket, ...options });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    secure.on('error', () => {});
    this.io = secure;
    this.listen(secure);
    return secure;
  }

  async closedWithin(timeoutMs = closeTimeoutMs): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const result = await Promise.race([this.closed.then(() => true), timeout]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.io.destroy();
    this.socket.destroy();
  }
}

function uint32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value, 0);
  return buffer;
}

function nbdString(text: string): Buffer {
  return Buffer.concat([uint32(Buffer.byteLength(text)), Buffer.from(text)]);
}

function optionBytes(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(c.NBD_OPTION_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

async function reply(client: RawClient): Promise<{ option: number; type: number; text: string }> {
  const header = await client.read(20);
  expect(header.readBigUInt64BE(0)).toBe(c.NBD_OPTION_REPLY_MAGIC);
  const data = await client.read(header.readUInt32BE(16));
  return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), text: data.toString() };
}

/** Connects, reads the greeting, sends fixed newstyle + no zeroes. */
async function greeted(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  const greeting = await client.read(18);
  expect(greeting.readBigUInt64BE(8)).toBe(c.NBD_OPTION_MAGIC);
  client.write(uint32(c.NBD_FLAG_C_FIXED_NEWSTYLE | c.NBD_FLAG_C_NO_ZEROES));
  return client;
}

const goData = (name: string) => Buffer.concat([nbdString(name), Buffer.from([0, 0])]);

/** NBD_OPT_GO's replies up to the final one; returns its type. */
async function goReplies(client: RawClient): Promise<number> {
  for (;;) {
    const { type } = await reply(client);
    if (type !== c.NBD_REP_INFO) return type;
  }
}

// ---- real tools ---------------------------------------------------------------------------------

interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool without blocking the event loop (the server lives in this process). */
function runTool(command: string, args: string[]): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: toolTimeoutMs, encoding: 'utf8', maxBuffer: 16 * mebibyte }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function mustRun(command: string, args: string[]): Promise<string> {
  const result = await runTool(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

async function poll(condition: () => boolean, timeoutMs = closeTimeoutMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');

// ---- fixtures -----------------------------------------------------------------------------------

interface Logged {
  level: 'info' | 'warn' | 'error';
  message: string;
  fields: Record<string, unknown>;
}

let workDir: string;
let files: TlsFiles;
let provider: MemoryVolumeProvider;
let logged: Logged[];
/** require: PSK and X.509; on: PSK only; off: no TLS. All serve the same volumes. */
let requireServer: NbdServer;
let onServer: NbdServer;
let offServer: NbdServer;

const logger = {
  info: (fields: object, message = '') => logged.push({ level: 'info', message, fields: fields as Record<string, unknown> }),
  warn: (fields: object, message = '') => logged.push({ level: 'warn', message, fields: fields as Record<string, unknown> }),
  error: (fields: object, message = '') => logged.push({ level: 'error', message, fields: fields as Record<string, unknown> }),
};

function pskKey(file: string): Buffer {
  return Buffer.from(fs.readFileSync(file, 'utf8').trim().split(':')[1]!, 'hex');
}

const pskClient = (identity: string, key: Buffer, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions => ({
  pskCallback: () => ({ identity, psk: key }),
  // Node's client offers PSK suites only when told to; no certificate is involved.
  ciphers: 'TLS_AES_128_GCM_SHA256:ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256',
  checkServerIdentity: () => undefined,
  ...extra,
});

const nbds = (port: number, exportName: string, query: string, user = '') =>
  `nbds://${user ? `${user}@` : ''}127.0.0.1:${port}/${exportName}?${query}`;

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-tls-'));
  files = makeTlsFiles(workDir);
  logged = [];
  provider = new MemoryVolumeProvider();
  provider.createVdi('disk', 16 * mebibyte);
  const base = { host: '127.0.0.1', port: 0, provider, logger };
  requireServer = await startNbdServer({
    ...base,
    tls: prepareNbdTls({ mode: 'require', pskFile: files.pskFile, certificatesDir: files.certificatesDir }),
  });
  onServer = await startNbdServer({ ...base, tls: prepareNbdTls({ mode: 'on', pskFile: files.pskFile }) });
  offServer = await startNbdServer(base);
});

afterAll(async () => {
  await Promise.all([requireServer?.close(), onServer?.close(), offServer?.close()]);
  fs.rmSync(workDir, { recursive: true, force: true });
});

/** The server still serves a TLS client end to end. */
async function stillServes(): Promise<void> {
  const out = await mustRun('nbdinfo', [nbds(requireServer.port, 'disk', `tls-psk-file=${files.pskFile}`, 'alice')]);
  expect(out).toContain('protocol: newstyle-fixed with TLS');
}

// ---- credentials --------------------------------------------------------------------------------

describe('credentials', () => {
  test('a psktool file: identity:hexkey lines, blank lines and comments skipped', () => {
    const keys = parsePskFile('# made by psktool\nalice:00ff10\n\nbob:ABCDEF01\r\n', 'keys.psk');
    expect([...keys.keys()]).toEqual(['alice', 'bob']);
    expect(keys.get('alice')!.toString('hex')).toBe('00ff10');
    expect(keys.get('bob')!.toString('hex')).toBe('abcdef01');
  });

  test.each([
    ['alice\n', 'keys.psk line 1: expected identity:hexkey'],
    [':00ff\n', 'keys.psk line 1: expected identity:hexkey'],
    ['alice:00ff\nbob:xyz0\n', 'keys.psk line 2: the key of bob is not an even number of hex digits'],
    ['alice:0ff\n', 'keys.psk line 1: the key of alice is not an even number of hex digits'],
    ['alice:\n', 'keys.psk line 1: the key of alice is not an even number of hex digits'],
    ['alice:00\nalice:11\n', 'keys.psk line 2: identity alice appears twice'],
    [`alice:${'00'.repeat(513)}\n`, 'keys.psk line 1: the key of alice is over 512 bytes'],
    ['\n# nothing\n', 'keys.psk: no identity:hexkey line'],
  ])('a bad PSK file %j is one line: %s', (text, message) => {
    expect(() => parsePskFile(text, 'keys.psk')).toThrow(new SdError('INVALID_ARGUMENT', message));
  });

  test('missing or mismatched files fail the start with one line naming the file', () => {
    const missing = path.join(workDir, 'nope.psk');
    expect(() => prepareNbdTls({ mode: 'on', pskFile: missing })).toThrow(`cannot read TLS PSK file ${missing}: no such file`);
    const emptyDir = fs.mkdtempSync(path.join(workDir, 'empty-'));
    expect(() => prepareNbdTls({ mode: 'on', certificatesDir: emptyDir })).toThrow(
      `cannot read TLS certificate ${path.join(emptyDir, 'server-cert.pem')}: no such file`,
    );
    const mismatched = fs.mkdtempSync(path.join(workDir, 'mismatch-'));
    fs.copyFileSync(path.join(files.certificatesDir, 'server-cert.pem'), path.join(mismatched, 'server-cert.pem'));
    fs.copyFileSync(path.join(files.otherCaDir, 'ca-key.pem'), path.join(mismatched, 'server-key.pem'));
    expect(() => prepareNbdTls({ mode: 'require', certificatesDir: mismatched })).toThrow(
      new RegExp(`^TLS credentials in ${mismatched}: .*key values mismatch`),
    );
    expect(() => prepareNbdTls({ mode: 'require' })).toThrow('NBD TLS require needs a PSK file or a certificates directory');
    expect(prepareNbdTls({ mode: 'off' }).mode).toBe('off');
  });
});

describe('sheep options', () => {
  const nbd = (...args: string[]) => parseSheepOptions([...args, '/store']).nbd;

  test('NBD listens on loopback unless an address is given, whatever -b says; TLS off there', () => {
    expect(nbd()).toEqual({ host: '127.0.0.1', port: 10809, tls: { mode: 'off' }, idleTimeoutMs: 0 });
    expect(nbd('-b', '0.0.0.0', '-p', '7001')).toEqual({ host: '127.0.0.1', port: 10810, tls: { mode: 'off' }, idleTimeoutMs: 0 });
    expect(nbd('--nbd', '11000')).toEqual({ host: '127.0.0.1', port: 11000, tls: { mode: 'off' }, idleTimeoutMs: 0 });
    expect(nbd('--nbd', 'off')).toBeNull();
  });

  test('off loopback TLS is on once credentials are given, or off only when asked', () => {
    expect(nbd('--nbd', '0.0.0.0:11000', '--nbd-tls-psk', 'k.psk')).toEqual({
      host: '0.0.0.0', port: 11000, tls: { mode: 'on', pskFile: 'k.psk' }, idleTimeoutMs: 0,
    });
    expect(nbd('--nbd', '10.1.2.3:11000', '--nbd-tls', 'require', '--nbd-tls-certificates', 'pki', '--nbd-tls-verify-peer'))
      .toEqual({ host: '10.1.2.3', port: 11000, tls: { mode: 'require', certificatesDir: 'pki', verifyPeer: true }, idleTimeoutMs: 0 });
    expect(nbd('--nbd', '0.0.0.0:11000', '--nbd-tls', 'off')).toEqual({ host: '0.0.0.0', port: 11000, tls: { mode: 'off' }, idleTimeoutMs: 0 });
    expect(nbd('--nbd-tls', 'require', '--nbd-tls-psk', 'k.psk')!.tls).toEqual({ mode: 'require', pskFile: 'k.psk' });
  });

  test.each([
    [['--nbd', '0.0.0.0:11000'], 'NBD on 0.0.0.0 is open to other hosts: give --nbd-tls-psk FILE or --nbd-tls-certificates DIR, or --nbd-tls off to serve it without TLS'],
    [['--nbd-tls', 'require'], '--nbd-tls require needs --nbd-tls-psk FILE or --nbd-tls-certificates DIR'],
    [['--nbd-tls', 'maybe'], "invalid --nbd-tls 'maybe': expected off, on, require"],
    [['--nbd', 'off', '--nbd-tls-psk', 'k.psk'], '--nbd-tls options need NBD, but --nbd is off'],
    [['--nbd-tls', 'off', '--nbd-tls-psk', 'k.psk'], '--nbd-tls off conflicts with --nbd-tls-psk and --nbd-tls-certificates'],
    [['--nbd-tls-psk', 'k.psk', '--nbd-tls-verify-peer'], '--nbd-tls-verify-peer needs --nbd-tls-certificates DIR and no --nbd-tls-psk'],
  ])('sheep %j: %s', (args, message) => {
    expect(() => nbd(...args)).toThrow(new SdError('INVALID_ARGUMENT', message));
  });
});

// ---- FORCEDTLS ----------------------------------------------------------------------------------

describe('require (FORCEDTLS)', () => {
  test('before STARTTLS every option but ABORT gets NBD_REP_ERR_TLS_REQD, INFO, GO and LIST included', async () => {
    const client = await greeted(requireServer.port);
    const options = [
      [c.NBD_OPT_LIST, Buffer.alloc(0)],
      [c.NBD_OPT_INFO, goData('disk')],
      [c.NBD_OPT_GO, goData('disk')],
      [c.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)],
      [c.NBD_OPT_LIST_META_CONTEXT, Buffer.concat([nbdString('disk'), uint32(0)])],
      [4242, Buffer.from('junk')],
    ] as const;
    for (const [option, data] of options) {
      client.write(optionBytes(option, data));
      expect(await reply(client)).toEqual({
        option,
        type: c.NBD_REP_ERR_TLS_REQD,
        text: 'TLS is required: send NBD_OPT_STARTTLS first',
      });
    }
    client.write(optionBytes(c.NBD_OPT_ABORT));
    expect(await reply(client)).toMatchObject({ option: c.NBD_OPT_ABORT, type: c.NBD_REP_ACK });
    expect(await client.closedWithin()).toBe(true);
  });

  test('NBD_OPT_EXPORT_NAME without TLS cannot carry an error: the session ends, nothing served', async () => {
    const client = await greeted(requireServer.port);
    client.write(optionBytes(c.NBD_OPT_EXPORT_NAME, Buffer.from('disk')));
    expect(await client.closedWithin()).toBe(true);
    await expect(client.read(1)).rejects.toThrow('connection closed');
    expect(logged.some((l) => l.level === 'warn' && l.message === 'nbd: refused, disconnected' &&
      l.fields['reason'] === 'NBD_OPT_EXPORT_NAME without TLS, and TLS is required')).toBe(true);
  });

  test('a plain nbdinfo and qemu-img are refused with the protocol error; the server goes on', async () => {
    const info = await runTool('nbdinfo', [`nbd://127.0.0.1:${requireServer.port}/disk`]);
    expect(info.code).not.toBe(0);
    expect(info.stdout).toContain('without TLS');
    expect(info.stderr).toContain('server replied with error to opt_go request');
    const qemu = await runTool('qemu-img', ['info', `nbd://127.0.0.1:${requireServer.port}/disk`]);
    expect(qemu.code).not.toBe(0);
    expect(qemu.stderr).toContain('TLS negotiation required before option 7 (go)');
    expect(qemu.stderr).toContain('server reported: TLS is required: send NBD_OPT_STARTTLS first');
    await stillServes();
  });

  test('after STARTTLS the same options are served; STARTTLS again is NBD_REP_ERR_INVALID', async () => {
    const client = await greeted(requireServer.port);
    client.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(client)).toMatchObject({ option: c.NBD_OPT_STARTTLS, type: c.NBD_REP_ACK });
    const secure = await client.startTls(pskClient('alice', pskKey(files.pskFile)));
    expect(secure.getProtocol()).toBe('TLSv1.3');
    client.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(client)).toEqual({ option: c.NBD_OPT_STARTTLS, type: c.NBD_REP_ERR_INVALID, text: 'TLS is already running' });
    client.write(optionBytes(c.NBD_OPT_LIST));
    expect(await reply(client)).toMatchObject({ type: c.NBD_REP_SERVER });
    expect(await reply(client)).toMatchObject({ type: c.NBD_REP_ACK });
    client.write(optionBytes(c.NBD_OPT_GO, goData('disk')));
    expect(await goReplies(client)).toBe(c.NBD_REP_ACK);
    client.destroy();
  });
});

// ---- STARTTLS edge cases ------------------------------------------------------------------------

describe('STARTTLS', () => {
  test('without TLS configured: NBD_REP_ERR_POLICY, and haggling goes on in the clear', async () => {
    const client = await greeted(offServer.port);
    client.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(client)).toEqual({
      option: c.NBD_OPT_STARTTLS,
      type: c.NBD_REP_ERR_POLICY,
      text: 'TLS is not enabled on this server',
    });
    client.write(optionBytes(c.NBD_OPT_GO, goData('disk')));
    expect(await goReplies(client)).toBe(c.NBD_REP_ACK);
    client.destroy();
  });

  test('with data: NBD_REP_ERR_INVALID and no upgrade', async () => {
    const client = await greeted(onServer.port);
    client.write(optionBytes(c.NBD_OPT_STARTTLS, Buffer.from('x')));
    expect(await reply(client)).toEqual({
      option: c.NBD_OPT_STARTTLS,
      type: c.NBD_REP_ERR_INVALID,
      text: 'NBD_OPT_STARTTLS takes no data',
    });
    client.write(optionBytes(c.NBD_OPT_GO, goData('disk')));
    expect(await goReplies(client)).toBe(c.NBD_REP_ACK);
    client.destroy();
  });

  test('what was negotiated in the clear is forgotten: structured replies must be asked again', async () => {
    const client = await greeted(onServer.port);
    client.write(optionBytes(c.NBD_OPT_STRUCTURED_REPLY));
    expect(await reply(client)).toMatchObject({ type: c.NBD_REP_ACK });
    client.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(client)).toMatchObject({ type: c.NBD_REP_ACK });
    await client.startTls(pskClient('alice', pskKey(files.pskFile)));
    const setMeta = Buffer.concat([nbdString('disk'), uint32(1), nbdString('base:allocation')]);
    client.write(optionBytes(c.NBD_OPT_SET_META_CONTEXT, setMeta));
    expect(await reply(client)).toEqual({
      option: c.NBD_OPT_SET_META_CONTEXT,
      type: c.NBD_REP_ERR_INVALID,
      text: 'negotiate structured replies first',
    });
    client.destroy();
  });

  test('TLS 1.2 with a PSK suite works too (the spec: MUST support 1.2)', async () => {
    const client = await greeted(onServer.port);
    client.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(client)).toMatchObject({ type: c.NBD_REP_ACK });
    const secure = await client.startTls(pskClient('alice', pskKey(files.pskFile), { maxVersion: 'TLSv1.2' }));
    expect(secure.getProtocol()).toBe('TLSv1.2');
    expect(secure.getCipher().name).toContain('PSK');
    client.write(optionBytes(c.NBD_OPT_GO, goData('disk')));
    expect(await goReplies(client)).toBe(c.NBD_REP_ACK);
    client.destroy();
  });

  test('bytes sent before the STARTTLS reply are a protocol violation: disconnected', async () => {
    const client = await greeted(onServer.port);
    client.write(Buffer.concat([optionBytes(c.NBD_OPT_STARTTLS), optionBytes(c.NBD_OPT_LIST)]));
    expect(await client.closedWithin()).toBe(true);
    expect(logged.some((l) => l.message === 'nbd: protocol violation, disconnected' &&
      l.fields['reason'] === 'data sent before the reply to NBD_OPT_STARTTLS')).toBe(true);
  });

  test('garbage instead of a TLS hello, a wrong key, an unknown identity: each fails alone', async () => {
    const garbage = await greeted(requireServer.port);
    garbage.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(garbage)).toMatchObject({ type: c.NBD_REP_ACK });
    garbage.write(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    expect(await garbage.closedWithin()).toBe(true);

    const wrong = await runTool('nbdinfo', [nbds(requireServer.port, 'disk', `tls-psk-file=${files.wrongPskFile}`, 'alice')]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('gnutls_handshake');
    expect(logged.some((l) => l.level === 'warn' && l.fields['reason'] === 'TLS handshake failed: binder does not verify')).toBe(true);

    const bobFile = path.join(workDir, 'bob.psk');
    fs.writeFileSync(bobFile, `bob:${pskKey(files.pskFile).toString('hex')}\n`);
    const bob = await runTool('nbdinfo', [nbds(requireServer.port, 'disk', `tls-psk-file=${bobFile}`, 'bob')]);
    expect(bob.code).not.toBe(0);
    expect(logged.some((l) => l.message === 'nbd: unknown TLS PSK identity' && l.fields['identity'] === 'bob')).toBe(true);

    await stillServes();
  });

  test.each([
    ['once the server has TLS running', true],
    ['while the server is still starting TLS', false],
  ])('close() reaches a connection haggling inside TLS, %s', async (_when, waitForServer) => {
    const server = await startNbdServer({
      host: '127.0.0.1', port: 0, provider, logger, tls: prepareNbdTls({ mode: 'on', pskFile: files.pskFile }),
    });
    const client = await greeted(server.port);
    client.write(optionBytes(c.NBD_OPT_STARTTLS));
    expect(await reply(client)).toMatchObject({ type: c.NBD_REP_ACK });
    const startedBefore = logged.filter((l) => l.message === 'nbd: TLS started').length;
    await client.startTls(pskClient('alice', pskKey(files.pskFile)));
    if (waitForServer) {
      await poll(() => logged.filter((l) => l.message === 'nbd: TLS started').length > startedBefore);
    }
    const closed = server.close().then(() => 'closed');
    const late = new Promise((resolve) => setTimeout(() => resolve('still open'), closeTimeoutMs));
    expect(await Promise.race([closed, late])).toBe('closed');
    expect(await client.closedWithin()).toBe(true);
  });
});

// ---- real clients -------------------------------------------------------------------------------

describe('qemu-img and nbdinfo', () => {
  test('X.509: nbdinfo and qemu-img verify the server against the CA; another CA is refused', async () => {
    const info = await mustRun('nbdinfo', [nbds(requireServer.port, 'disk', `tls-certificates=${files.clientCertificatesDir}`)]);
    expect(info).toContain('protocol: newstyle-fixed with TLS');
    expect(info).toContain('export-size: 16777216');
    const qemu = await mustRun('qemu-img', [
      'info', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${files.clientCertificatesDir}`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${requireServer.port},export=disk,tls-creds=tls0`,
    ]);
    expect(qemu).toContain('virtual size: 16 MiB (16777216 bytes)');
    const other = await runTool('nbdinfo', [nbds(requireServer.port, 'disk', `tls-certificates=${files.otherCaDir}`)]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain('certificate');
    await stillServes();
  });

  test('verify-peer: only clients with a certificate of the CA get in', async () => {
    const server = await startNbdServer({
      host: '127.0.0.1', port: 0, provider, logger,
      tls: prepareNbdTls({ mode: 'require', certificatesDir: files.certificatesDir, verifyPeer: true }),
    });
    try {
      const uri = (dir: string) => nbds(server.port, 'disk', `tls-certificates=${dir}`);
      expect(await mustRun('nbdinfo', [uri(files.clientWithCertDir)])).toContain('with TLS');
      const qemu = await mustRun('qemu-img', [
        'info', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${files.clientWithCertDir}`,
        '--image-opts', `driver=nbd,host=127.0.0.1,port=${server.port},export=disk,tls-creds=tls0`,
      ]);
      expect(qemu).toContain('virtual size: 16 MiB');
      expect(logged.some((l) => l.message === 'nbd: TLS started' && l.fields['clientCertificate'] === 'alice')).toBe(true);
      for (const dir of [files.clientCertificatesDir, files.strangerCertDir]) {
        const refused = await runTool('nbdinfo', [uri(dir)]);
        expect(refused.code, dir).not.toBe(0);
      }
      // GnuTLS sends no certificate the server's CA list does not name; Node sends it anyway.
      const reasons = () => logged.filter((l) => l.message === 'nbd: refused, disconnected').map((l) => String(l.fields['reason']));
      expect(reasons()).toContain('TLS handshake failed: peer did not return a certificate');
      const stranger = await greeted(server.port);
      stranger.write(optionBytes(c.NBD_OPT_STARTTLS));
      expect(await reply(stranger)).toMatchObject({ type: c.NBD_REP_ACK });
      const read = (name: string) => fs.readFileSync(path.join(files.strangerCertDir, name));
      await stranger.startTls({
        cert: read('client-cert.pem'), key: read('client-key.pem'), ca: read('ca-cert.pem'), checkServerIdentity: () => undefined,
      }).catch(() => undefined); // TLS 1.3: the client may finish before the server refuses it
      expect(await stranger.closedWithin()).toBe(true);
      await poll(() => reasons().includes('TLS handshake failed: client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE'));
      expect(await mustRun('nbdinfo', [uri(files.clientWithCertDir)])).toContain('with TLS');
    } finally {
      await server.close();
    }
    expect(() => prepareNbdTls({ mode: 'on', pskFile: files.pskFile, certificatesDir: files.certificatesDir, verifyPeer: true }))
      .toThrow('verifying client certificates needs a certificates directory and no PSK file');
  });

  test('data written by qemu-img over TLS-PSK reads back byte-identical in the clear', async () => {
    provider.createVdi('psk-disk', 8 * mebibyte);
    const data = randomBytes(8 * mebibyte);
    const source = path.join(workDir, 'source.raw');
    const copy = path.join(workDir, 'copy.raw');
    fs.writeFileSync(source, data);
    await mustRun('qemu-img', [
      'convert', '-n', '-f', 'raw', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${files.qemuPskDir},username=alice`,
      '--target-image-opts', source, `driver=nbd,host=127.0.0.1,port=${requireServer.port},export=psk-disk,tls-creds=tls0`,
    ]);
    await mustRun('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd://127.0.0.1:${offServer.port}/psk-disk`, copy]);
    expect(md5(fs.readFileSync(copy))).toBe(md5(data));
    expect(logged.some((l) => l.message === 'nbd: transmission started' && l.fields['exportName'] === 'psk-disk' &&
      l.fields['tls'] === true)).toBe(true);
  });

  test('on: TLS is offered, a plain client is still served', async () => {
    const plain = await mustRun('nbdinfo', [`nbd://127.0.0.1:${onServer.port}/disk`]);
    expect(plain).toContain('protocol: newstyle-fixed without TLS');
    const before = logged.length;
    const secure = await mustRun('nbdinfo', [nbds(onServer.port, 'disk', `tls-psk-file=${files.pskFile}`, 'alice')]);
    expect(secure).toContain('protocol: newstyle-fixed with TLS');
    // Our order wins over GnuTLS's ChaCha20-first: AES-128-GCM (AES-NI) is the faster here.
    expect(logged.slice(before).find((l) => l.message === 'nbd: TLS started')?.fields).toMatchObject({
      protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', identity: 'alice',
    });
  });
});
