// The NBD server at the byte level: a raw socket client that can send what real clients never do
// (garbage, huge lengths, half a write) and checks the exact replies and disconnects.
import { createConnection, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import * as c from '../src/nbd/constants.js';
import { startNbdServer, type NbdServer } from '../src/nbd/index.js';
import { nbdInflightRequestsMax } from '../src/nbd/limits.js';
import { MemoryVolumeProvider, WriteGate } from './support/memory-volume.js';

const mebibyte = 1024 * 1024;
const volumeSizeBytes = 16 * mebibyte;
const closeTimeoutMs = 3000;

class RawClient {
  private readonly chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private waiter: {
    needBytes: number;
    resolve: () => void;
    reject: (error: Error) => void;
  } | null = null;
  private closedFlag = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.length;
      if (this.waiter && this.bufferedBytes >= this.waiter.needBytes) {
        const waiter = this.waiter;
        this.waiter = null;
        waiter.resolve();
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedFlag = true;
        this.waiter?.reject(new Error('closed'));
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () =>
        resolve(new RawClient(socket)),
      );
      socket.once('error', reject);
    });
  }

  async read(lengthBytes: number): Promise<Buffer> {
    if (this.bufferedBytes < lengthBytes) {
      if (this.closedFlag) throw new Error('closed');
      await new Promise<void>((resolve, reject) => {
        this.waiter = { needBytes: lengthBytes, resolve, reject };
      });
    }
    const all = Buffer.concat(this.chunks);
    this.chunks.length = 0;
    this.chunks.push(all.subarray(lengthBytes));
    this.bufferedBytes -= lengthBytes;
    return all.subarray(0, lengthBytes);
  }

  write(...parts: Buffer[]): void {
    for (const part of parts) this.socket.write(part);
  }

  /** True if the server closed the connection within the timeout. */
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
    this.socket.destroy();
  }
}

function uint32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value, 0);
  return buffer;
}

function uint16(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(value, 0);
  return buffer;
}

function nbdString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([uint32(bytes.length), bytes]);
}

async function greet(
  client: RawClient,
  clientFlags = c.NBD_FLAG_C_FIXED_NEWSTYLE | c.NBD_FLAG_C_NO_ZEROES,
): Promise<void> {
  const greeting = await client.read(18);
  expect(greeting.readBigUInt64BE(0)).toBe(c.NBD_MAGIC);
  expect(greeting.readBigUInt64BE(8)).toBe(c.NBD_OPTION_MAGIC);
  expect(greeting.readUInt16BE(16)).toBe(c.NBD_FLAG_FIXED_NEWSTYLE | c.NBD_FLAG_NO_ZEROES);
  client.write(uint32(clientFlags));
}

function sendOption(client: RawClient, option: number, data: Buffer = Buffer.alloc(0)): void {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(c.NBD_OPTION_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(data.length, 12);
  client.write(header, data);
}

async function readOptionReply(
  client: RawClient,
): Promise<{ option: number; type: number; data: Buffer }> {
  const header = await client.read(20);
  expect(header.readBigUInt64BE(0)).toBe(c.NBD_OPTION_REPLY_MAGIC);
  const lengthBytes = header.readUInt32BE(16);
  return {
    option: header.readUInt32BE(8),
    type: header.readUInt32BE(12),
    data: await client.read(lengthBytes),
  };
}

interface Opened {
  client: RawClient;
  sizeBytes: number;
  flags: number;
}

/** Connects and enters transmission with NBD_OPT_GO, optionally with structured replies. */
async function openExport(
  port: number,
  name: string,
  options: { structured?: boolean; allocation?: boolean } = {},
): Promise<Opened> {
  const client = await RawClient.connect(port);
  await greet(client);
  if (options.structured) {
    sendOption(client, c.NBD_OPT_STRUCTURED_REPLY);
    expect((await readOptionReply(client)).type).toBe(c.NBD_REP_ACK);
  }
  if (options.allocation) {
    sendOption(
      client,
      c.NBD_OPT_SET_META_CONTEXT,
      Buffer.concat([nbdString(name), uint32(1), nbdString('base:allocation')]),
    );
    const context = await readOptionReply(client);
    expect(context.type).toBe(c.NBD_REP_META_CONTEXT);
    expect(context.data.subarray(4).toString()).toBe('base:allocation');
    expect((await readOptionReply(client)).type).toBe(c.NBD_REP_ACK);
  }
  sendOption(client, c.NBD_OPT_GO, Buffer.concat([nbdString(name), uint16(0)]));
  let sizeBytes = -1;
  let flags = 0;
  for (;;) {
    const reply = await readOptionReply(client);
    if (reply.type === c.NBD_REP_ACK) break;
    expect(reply.type).toBe(c.NBD_REP_INFO);
    if (reply.data.readUInt16BE(0) === c.NBD_INFO_EXPORT) {
      sizeBytes = Number(reply.data.readBigUInt64BE(2));
      flags = reply.data.readUInt16BE(10);
    }
  }
  return { client, sizeBytes, flags };
}

interface RequestSpec {
  type: number;
  handle: bigint;
  offset?: bigint;
  lengthBytes?: number;
  flags?: number;
  payload?: Buffer;
}

function sendRequest(client: RawClient, request: RequestSpec): void {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(c.NBD_REQUEST_MAGIC, 0);
  header.writeUInt16BE(request.flags ?? 0, 4);
  header.writeUInt16BE(request.type, 6);
  header.writeBigUInt64BE(request.handle, 8);
  header.writeBigUInt64BE(request.offset ?? 0n, 16);
  header.writeUInt32BE(request.lengthBytes ?? request.payload?.length ?? 0, 24);
  client.write(header, ...(request.payload ? [request.payload] : []));
}

async function readSimpleReply(
  client: RawClient,
  dataBytes = 0,
): Promise<{ errno: number; handle: bigint; data: Buffer }> {
  const header = await client.read(16);
  expect(header.readUInt32BE(0)).toBe(c.NBD_SIMPLE_REPLY_MAGIC);
  const errno = header.readUInt32BE(4);
  return {
    errno,
    handle: header.readBigUInt64BE(8),
    data: errno === 0 ? await client.read(dataBytes) : Buffer.alloc(0),
  };
}

async function readChunk(
  client: RawClient,
): Promise<{ flags: number; type: number; handle: bigint; payload: Buffer }> {
  const header = await client.read(20);
  expect(header.readUInt32BE(0)).toBe(c.NBD_STRUCTURED_REPLY_MAGIC);
  return {
    flags: header.readUInt16BE(4),
    type: header.readUInt16BE(6),
    handle: header.readBigUInt64BE(8),
    payload: await client.read(header.readUInt32BE(16)),
  };
}

let provider: MemoryVolumeProvider;
let server: NbdServer;
const warnings: string[] = [];

beforeAll(async () => {
  provider = new MemoryVolumeProvider();
  provider.createVdi('disk', volumeSizeBytes);
  provider.createVdi('other', volumeSizeBytes);
  provider.snapshot('disk', 'frozen');
  const logger = {
    info: () => {},
    warn: (_fields: object, message?: string) => warnings.push(message ?? ''),
    error: () => {},
  };
  server = await startNbdServer({ host: '127.0.0.1', port: 0, provider, logger });
});

afterAll(async () => {
  await server?.close();
  expect(provider.closeCount).toBe(provider.openCount);
});

/** After each abuse, a well-behaved client must still get served. */
async function expectServerStillServes(): Promise<void> {
  const { client } = await openExport(server.port, 'other');
  sendRequest(client, { type: c.NBD_CMD_READ, handle: 77n, lengthBytes: 512 });
  const reply = await readSimpleReply(client, 512);
  expect(reply).toMatchObject({ errno: 0, handle: 77n });
  sendRequest(client, { type: c.NBD_CMD_DISC, handle: 78n });
  expect(await client.closedWithin()).toBe(true);
}

describe('handshake', () => {
  beforeEach(() => {
    warnings.length = 0;
  });

  test('garbage instead of an option closes the connection', async () => {
    const client = await RawClient.connect(server.port);
    await greet(client);
    client.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(await client.closedWithin()).toBe(true);
    expect(warnings).toContain('nbd: protocol violation, disconnected');
    await expectServerStillServes();
  });

  test('unknown client flags close the connection', async () => {
    const client = await RawClient.connect(server.port);
    await greet(client, 0x80);
    expect(await client.closedWithin()).toBe(true);
  });

  test('an option length over 64 KiB closes the connection before reading it', async () => {
    const client = await RawClient.connect(server.port);
    await greet(client);
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(c.NBD_OPTION_MAGIC, 0);
    header.writeUInt32BE(c.NBD_OPT_GO, 8);
    header.writeUInt32BE(0xffffffff, 12);
    client.write(header);
    expect(await client.closedWithin()).toBe(true);
    await expectServerStillServes();
  });

  test('unknown options get ERR_UNSUP and haggling goes on', async () => {
    const client = await RawClient.connect(server.port);
    await greet(client);
    sendOption(client, 4242, Buffer.from('whatever'));
    const reply = await readOptionReply(client);
    expect(reply).toMatchObject({ option: 4242, type: c.NBD_REP_ERR_UNSUP });
    sendOption(client, c.NBD_OPT_LIST);
    const names: string[] = [];
    for (;;) {
      const entry = await readOptionReply(client);
      if (entry.type === c.NBD_REP_ACK) break;
      expect(entry.type).toBe(c.NBD_REP_SERVER);
      names.push(entry.data.subarray(4, 4 + entry.data.readUInt32BE(0)).toString());
    }
    expect(names).toEqual(['disk', 'other']);
    sendOption(client, c.NBD_OPT_ABORT);
    expect((await readOptionReply(client)).type).toBe(c.NBD_REP_ACK);
    expect(await client.closedWithin()).toBe(true);
  });

  test('NBD_OPT_GO on an unknown export is ERR_UNKNOWN with a message', async () => {
    const client = await RawClient.connect(server.port);
    await greet(client);
    sendOption(client, c.NBD_OPT_GO, Buffer.concat([nbdString('ghost'), uint16(0)]));
    const reply = await readOptionReply(client);
    expect(reply.type).toBe(c.NBD_REP_ERR_UNKNOWN);
    expect(reply.data.toString()).toBe('ghost: no VDI named ghost');
    sendOption(client, c.NBD_OPT_GO, Buffer.concat([nbdString(''), uint16(0)]));
    expect((await readOptionReply(client)).type).toBe(c.NBD_REP_ERR_UNKNOWN);
    client.destroy();
  });

  test('NBD_OPT_EXPORT_NAME sends size, flags and 124 zeroes unless NO_ZEROES', async () => {
    const client = await RawClient.connect(server.port);
    await greet(client, c.NBD_FLAG_C_FIXED_NEWSTYLE);
    sendOption(client, c.NBD_OPT_EXPORT_NAME, Buffer.from('disk:frozen'));
    const reply = await client.read(8 + 2 + 124);
    expect(Number(reply.readBigUInt64BE(0))).toBe(volumeSizeBytes);
    expect(reply.readUInt16BE(8) & c.NBD_FLAG_READ_ONLY).toBe(c.NBD_FLAG_READ_ONLY);
    expect(reply.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    client.destroy();
    const unknown = await RawClient.connect(server.port);
    await greet(unknown);
    sendOption(unknown, c.NBD_OPT_EXPORT_NAME, Buffer.from('ghost'));
    // NBD_OPT_EXPORT_NAME cannot carry an error: refusal is a disconnect.
    expect(await unknown.closedWithin()).toBe(true);
  });
});

describe('transmission', () => {
  test('past-the-end, too large or unknown requests get errors; the connection lives', async () => {
    const { client, sizeBytes } = await openExport(server.port, 'disk');
    expect(sizeBytes).toBe(volumeSizeBytes);
    sendRequest(client, {
      type: c.NBD_CMD_READ,
      handle: 1n,
      offset: BigInt(volumeSizeBytes - 10),
      lengthBytes: 100,
    });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 1n });
    sendRequest(client, { type: c.NBD_CMD_READ, handle: 2n, offset: 2n ** 63n, lengthBytes: 1 });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 2n });
    sendRequest(client, {
      type: c.NBD_CMD_WRITE,
      handle: 3n,
      offset: BigInt(volumeSizeBytes - 1),
      payload: Buffer.alloc(4096, 1),
    });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_ENOSPC, handle: 3n });
    sendRequest(client, { type: c.NBD_CMD_READ, handle: 4n, lengthBytes: 64 * mebibyte });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 4n });
    sendRequest(client, { type: 42, handle: 5n });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 5n });
    sendRequest(client, {
      type: c.NBD_CMD_READ,
      handle: 6n,
      lengthBytes: 4,
      flags: c.NBD_CMD_FLAG_DF,
    });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 6n });
    sendRequest(client, { type: c.NBD_CMD_BLOCK_STATUS, handle: 7n, lengthBytes: 4096 });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 7n });
    expect(provider.objectCount('disk')).toBe(0);
    sendRequest(client, {
      type: c.NBD_CMD_WRITE,
      handle: 8n,
      offset: 100n,
      payload: Buffer.from('still in sync'),
    });
    expect(await readSimpleReply(client)).toMatchObject({ errno: 0, handle: 8n });
    sendRequest(client, { type: c.NBD_CMD_READ, handle: 9n, offset: 100n, lengthBytes: 13 });
    expect((await readSimpleReply(client, 13)).data.toString()).toBe('still in sync');
    client.destroy();
  });

  test('a write whose payload is over 32 MiB is refused and the connection closed', async () => {
    const { client } = await openExport(server.port, 'disk');
    sendRequest(client, { type: c.NBD_CMD_WRITE, handle: 1n, lengthBytes: 32 * mebibyte + 1 });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EINVAL, handle: 1n });
    expect(await client.closedWithin()).toBe(true);
    await expectServerStillServes();
  });

  test('a request with a bad magic closes the connection', async () => {
    const { client } = await openExport(server.port, 'disk');
    client.write(Buffer.alloc(28, 0x41));
    expect(await client.closedWithin()).toBe(true);
    await expectServerStillServes();
  });

  test('writes to a read-only snapshot get EPERM, its reads work', async () => {
    const { client, flags } = await openExport(server.port, 'disk:frozen');
    expect(flags & c.NBD_FLAG_READ_ONLY).toBe(c.NBD_FLAG_READ_ONLY);
    expect(flags & c.NBD_FLAG_SEND_TRIM).toBe(0);
    sendRequest(client, { type: c.NBD_CMD_WRITE, handle: 1n, payload: Buffer.alloc(1000, 7) });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EPERM, handle: 1n });
    sendRequest(client, { type: c.NBD_CMD_TRIM, handle: 2n, lengthBytes: 4096 });
    expect(await readSimpleReply(client)).toMatchObject({ errno: c.NBD_EPERM, handle: 2n });
    sendRequest(client, { type: c.NBD_CMD_READ, handle: 3n, lengthBytes: 1000 });
    const read = await readSimpleReply(client, 1000);
    expect(read.errno).toBe(0);
    expect(read.data.equals(Buffer.alloc(1000))).toBe(true);
    expect(provider.objectCount('disk:frozen')).toBe(0);
    client.destroy();
  });

  test('a client that disconnects mid-write leaves the volume untouched', async () => {
    const objectsBefore = provider.objectCount('other');
    const { client } = await openExport(server.port, 'other');
    sendRequest(client, {
      type: c.NBD_CMD_WRITE,
      handle: 1n,
      offset: 8n * BigInt(mebibyte),
      lengthBytes: 2 * mebibyte,
    });
    client.write(Buffer.alloc(mebibyte, 0xee));
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.destroy();
    await expectServerStillServes();
    expect(provider.objectCount('other')).toBe(objectsBefore);
  });

  test('many pipelined requests all get answered, with the right data per handle', async () => {
    const { client } = await openExport(server.port, 'disk');
    const requestCount = 300;
    const pieceBytes = 64 * 1024;
    for (let index = 0; index < requestCount; index += 1) {
      sendRequest(client, {
        type: c.NBD_CMD_WRITE,
        handle: BigInt(index),
        offset: BigInt(index * 4096),
        payload: Buffer.alloc(4096, index % 251),
        flags: c.NBD_CMD_FLAG_FUA,
      });
    }
    const written = new Set<bigint>();
    for (let index = 0; index < requestCount; index += 1) {
      const reply = await readSimpleReply(client);
      expect(reply.errno).toBe(0);
      written.add(reply.handle);
    }
    expect(written.size).toBe(requestCount);
    for (let index = 0; index < requestCount; index += 1) {
      sendRequest(client, {
        type: c.NBD_CMD_READ,
        handle: BigInt(index),
        offset: BigInt(index * 4096),
        lengthBytes: pieceBytes,
      });
    }
    for (let index = 0; index < requestCount; index += 1) {
      const reply = await readSimpleReply(client, pieceBytes);
      expect(reply.errno).toBe(0);
      const first = Number(reply.handle);
      expect(reply.data[0]).toBe(first % 251);
      expect(reply.data[4095]).toBe(first % 251);
    }
    sendRequest(client, { type: c.NBD_CMD_FLUSH, handle: 999n });
    expect(await readSimpleReply(client)).toMatchObject({ errno: 0, handle: 999n });
    sendRequest(client, { type: c.NBD_CMD_WRITE_ZEROES, handle: 1000n, lengthBytes: 4 * mebibyte });
    expect(await readSimpleReply(client)).toMatchObject({ errno: 0, handle: 1000n });
    expect(provider.objectCount('disk')).toBe(0);
    client.destroy();
  });

  test('in-flight requests are capped; the rest wait in the socket, then complete', async () => {
    const gate = new WriteGate();
    provider.writeGate = gate;
    try {
      const { client } = await openExport(server.port, 'other');
      const requestCount = 3 * nbdInflightRequestsMax;
      for (let index = 0; index < requestCount; index += 1) {
        sendRequest(client, {
          type: c.NBD_CMD_WRITE,
          handle: BigInt(index),
          offset: BigInt(index * 65536),
          payload: Buffer.alloc(65536, 1 + (index % 200)),
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(gate.waitingCount).toBe(nbdInflightRequestsMax);
      gate.open();
      const handles = new Set<bigint>();
      for (let index = 0; index < requestCount; index += 1) {
        const reply = await readSimpleReply(client);
        expect(reply.errno).toBe(0);
        handles.add(reply.handle);
      }
      expect(handles.size).toBe(requestCount);
      expect(gate.waitingCountMax).toBe(nbdInflightRequestsMax);
      sendRequest(client, {
        type: c.NBD_CMD_READ,
        handle: 1n,
        offset: BigInt((requestCount - 1) * 65536),
        lengthBytes: 1,
      });
      expect((await readSimpleReply(client, 1)).data[0]).toBe(1 + ((requestCount - 1) % 200));
      client.destroy();
    } finally {
      provider.writeGate = null;
    }
  });

  test('structured replies: one data chunk, error chunks with messages, block status', async () => {
    const { client, flags } = await openExport(server.port, 'disk', {
      structured: true,
      allocation: true,
    });
    expect(flags & c.NBD_FLAG_SEND_DF).toBe(c.NBD_FLAG_SEND_DF);
    sendRequest(client, {
      type: c.NBD_CMD_WRITE,
      handle: 1n,
      offset: BigInt(5 * mebibyte),
      payload: Buffer.from('hello'),
    });
    expect(await readSimpleReply(client)).toMatchObject({ errno: 0, handle: 1n });
    sendRequest(client, {
      type: c.NBD_CMD_READ,
      handle: 2n,
      offset: BigInt(5 * mebibyte),
      lengthBytes: 5,
      flags: c.NBD_CMD_FLAG_DF,
    });
    const data = await readChunk(client);
    expect(data).toMatchObject({
      type: c.NBD_REPLY_TYPE_OFFSET_DATA,
      flags: c.NBD_REPLY_FLAG_DONE,
      handle: 2n,
    });
    expect(Number(data.payload.readBigUInt64BE(0))).toBe(5 * mebibyte);
    expect(data.payload.subarray(8).toString()).toBe('hello');
    sendRequest(client, {
      type: c.NBD_CMD_READ,
      handle: 3n,
      offset: BigInt(volumeSizeBytes),
      lengthBytes: 1,
    });
    const error = await readChunk(client);
    expect(error).toMatchObject({
      type: c.NBD_REPLY_TYPE_ERROR,
      flags: c.NBD_REPLY_FLAG_DONE,
      handle: 3n,
    });
    expect(error.payload.readUInt32BE(0)).toBe(c.NBD_EINVAL);
    expect(error.payload.subarray(6).toString()).toBe(
      `range past the end (${volumeSizeBytes} bytes)`,
    );
    sendRequest(client, { type: c.NBD_CMD_BLOCK_STATUS, handle: 4n, lengthBytes: volumeSizeBytes });
    const status = await readChunk(client);
    expect(status).toMatchObject({
      type: c.NBD_REPLY_TYPE_BLOCK_STATUS,
      flags: c.NBD_REPLY_FLAG_DONE,
      handle: 4n,
    });
    const descriptors: number[][] = [];
    for (let at = 4; at < status.payload.length; at += 8) {
      descriptors.push([status.payload.readUInt32BE(at), status.payload.readUInt32BE(at + 4)]);
    }
    const hole = c.NBD_STATE_HOLE | c.NBD_STATE_ZERO;
    expect(descriptors).toEqual([
      [4 * mebibyte, hole],
      [4 * mebibyte, 0],
      [8 * mebibyte, hole],
    ]);
    sendRequest(client, {
      type: c.NBD_CMD_BLOCK_STATUS,
      handle: 5n,
      lengthBytes: 8 * mebibyte,
      flags: c.NBD_CMD_FLAG_REQ_ONE,
    });
    const one = await readChunk(client);
    expect(one.payload.length).toBe(12);
    expect(one.payload.readUInt32BE(4)).toBe(4 * mebibyte);
    sendRequest(client, {
      type: c.NBD_CMD_TRIM,
      handle: 6n,
      offset: BigInt(4 * mebibyte),
      lengthBytes: 4 * mebibyte,
    });
    expect(await readSimpleReply(client)).toMatchObject({ errno: 0, handle: 6n });
    sendRequest(client, { type: c.NBD_CMD_DISC, handle: 7n });
    expect(await client.closedWithin()).toBe(true);
    expect(provider.objectCount('disk')).toBe(0);
  });

  test('connections to one export share one opened volume, closed after the last', async () => {
    const opensBefore = provider.openCount;
    const closesBefore = provider.closeCount;
    const first = await openExport(server.port, 'other');
    const second = await openExport(server.port, 'other');
    sendRequest(first.client, {
      type: c.NBD_CMD_WRITE,
      handle: 1n,
      payload: Buffer.from('shared'),
    });
    expect((await readSimpleReply(first.client)).errno).toBe(0);
    sendRequest(second.client, { type: c.NBD_CMD_READ, handle: 1n, lengthBytes: 6 });
    expect((await readSimpleReply(second.client, 6)).data.toString()).toBe('shared');
    expect(provider.openCount - opensBefore).toBe(1);
    first.client.destroy();
    await first.client.closed;
    sendRequest(second.client, { type: c.NBD_CMD_DISC, handle: 2n });
    expect(await second.client.closedWithin()).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(provider.closeCount - closesBefore).toBe(1);
  });
});

describe('server close', () => {
  test('answers in-flight requests, closes connections and stops listening', async () => {
    const ownProvider = new MemoryVolumeProvider();
    ownProvider.createVdi('disk', volumeSizeBytes);
    const gate = new WriteGate();
    ownProvider.writeGate = gate;
    const ownServer = await startNbdServer({ host: '127.0.0.1', port: 0, provider: ownProvider });
    const { client } = await openExport(ownServer.port, 'disk');
    sendRequest(client, { type: c.NBD_CMD_WRITE, handle: 1n, payload: Buffer.from('last words') });
    while (gate.waitingCount === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const closing = ownServer.close();
    gate.open();
    expect(await readSimpleReply(client)).toMatchObject({ errno: 0, handle: 1n });
    await closing;
    expect(await client.closedWithin()).toBe(true);
    expect(ownProvider.closeCount).toBe(ownProvider.openCount);
    await expect(RawClient.connect(ownServer.port)).rejects.toThrow(/ECONNREFUSED/);
  });
});
