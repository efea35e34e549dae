// The rpc client and server over an in-memory transport: typed calls, data both ways, error
// codes (with the epoch of an OLD_EPOCH), and malformed requests answered, not thrown, and
// logged at a bounded rate.
import { describe, expect, it } from 'vitest';
import { SdError, oldEpochError } from '../src/engine/errors.js';
import { asVid, dataOid } from '../src/engine/oid.js';
import { RpcClient } from '../src/rpc/client.js';
import { protocolHandler, RpcServer, type Handlers } from '../src/rpc/server.js';
import { ManualClock } from './support/manual-clock.js';
import { MemoryTransport } from './support/memory-transport.js';

const oid = dataOid(asVid(1), 2);

function recordingLog() {
  const warnings: Array<{ fields: Record<string, unknown>; message: string | undefined }> = [];
  return { warnings, warn: (fields: object, message?: string) => void warnings.push({ fields: fields as Record<string, unknown>, message }) };
}

/** Only the ops a test uses answer; the rest must not be reached. */
function handlers(partial: Partial<Handlers>): Handlers {
  return new Proxy(partial, {
    get: (target, op: string) => target[op as keyof Handlers] ?? (async () => {
      throw new Error(`unexpected op ${op}`);
    }),
  }) as Handlers;
}

async function serve(table: Handlers, clock = new ManualClock()) {
  const transport = new MemoryTransport();
  const log = recordingLog();
  const bugs: unknown[] = [];
  const handle = protocolHandler(table, clock, log);
  const server = new RpcServer(handle, { clock, log, onBug: (bug) => bugs.push(bug) });
  await transport.listen('127.0.0.1', 7000, (stream) => server.accept(stream));
  const client = new RpcClient({ transport, clock, host: '127.0.0.1', port: 7000 });
  return { client, log, bugs, clock, transport };
}

async function rejection(promise: Promise<unknown>): Promise<SdError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  if (!(error instanceof SdError)) throw new Error(`expected an SdError, got ${String(error)}`);
  return error;
}

describe('rpc over a transport', () => {
  it('calls an op and gets its declared result, data both ways', async () => {
    const written: Buffer[] = [];
    const { client } = await serve(
      handlers({
        ping: async () => 'pong',
        'gw.read': async (r) => Buffer.alloc(r.length, 5),
        'gw.write': async (_r, data) => {
          written.push(data);
          return null;
        },
      }),
    );
    expect(await client.call('ping', {})).toBe('pong');
    expect(await client.call('gw.read', { oid, offset: 0, length: 3 })).toEqual(Buffer.from([5, 5, 5]));
    expect(await client.call('gw.write', { oid, offset: 0 }, Buffer.from('hi'))).toBeNull();
    expect(written.map(String)).toEqual(['hi']);
    client.close();
  });

  it('carries an error code, and the receiver epoch of an OLD_EPOCH', async () => {
    const { client } = await serve(
      handlers({
        'vdi.lookup': async () => {
          throw new SdError('NO_VDI', 'No VDI found');
        },
        'peer.exists': async () => {
          throw oldEpochError(3, 4);
        },
      }),
    );
    const noVdi = await rejection(client.call('vdi.lookup', { name: 'x' }));
    expect([noVdi.code, noVdi.message, noVdi.epoch]).toEqual(['NO_VDI', 'No VDI found', undefined]);
    const old = await rejection(client.call('peer.exists', { oid, epoch: 3, from: 'a:1' }));
    expect([old.code, old.epoch]).toEqual(['OLD_EPOCH', 4]);
    client.close();
  });

  it('answers a malformed request with its code, logs it without a stack, at a bounded rate', async () => {
    const { client, log, bugs, clock } = await serve(handlers({ ping: async () => 'pong' }));
    // Requests no typed call can make: sent through the untyped door on purpose.
    const raw = client as unknown as { call(op: unknown, fields: object): Promise<unknown> };
    const first = await rejection(raw.call('no.such.op', {}));
    expect(first.code).toBe('PROTOCOL');
    expect((await rejection(raw.call('gw.read', { oid: 'nope', offset: 0, length: 1 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(raw.call('cluster.format', { copies: 99 }))).code).toBe('INVALID_ARGUMENT');
    expect(log.warnings[0]!.fields).toEqual({ code: 'PROTOCOL', reason: 'unknown operation no.such.op', suppressed: 0 });
    // An op that is a map whose own toString is a number, or other values that are no string.
    for (const op of [{ toString: 1 }, { valueOf: 1, toString: 2 }, [1, 2], null, 7, true]) {
      const error = await rejection(raw.call(op, {}));
      expect([error.code, error.message]).toEqual(['PROTOCOL', expect.stringMatching(/^unknown operation \(/)]);
    }
    expect(log.warnings.map((w) => w.fields['reason'])).toEqual([
      'unknown operation no.such.op',
      "request field 'oid' is not an object id",
      "request field 'copies' must be between 1 and 31",
      'unknown operation (a map)',
      'unknown operation (a map)',
    ]);
    expect(JSON.stringify(log.warnings)).not.toMatch(/stack|at .*\.ts/);
    // A flood is held back: the bucket refills one line per interval, counting what it dropped.
    for (let i = 0; i < 1000; i++) await rejection(raw.call({ toString: i }, {}));
    expect(log.warnings).toHaveLength(5);
    await clock.advance(10_000);
    await rejection(raw.call('no.such.op', {}));
    expect(log.warnings).toHaveLength(6);
    expect(log.warnings[5]!.fields['suppressed']).toBe(1004);
    expect(await client.call('ping', {})).toBe('pong'); // the connection still serves
    expect(bugs).toEqual([]);
    client.close();
  });

  it('fails a call whose connection cannot be made with NETWORK', async () => {
    const transport = new MemoryTransport();
    const client = new RpcClient({ transport, clock: new ManualClock(), host: '127.0.0.1', port: 1 });
    const error = await rejection(client.call('ping', {}));
    expect([error.code, error.message]).toEqual(['NETWORK', 'cannot connect to 127.0.0.1:1: ECONNREFUSED']);
  });
});
