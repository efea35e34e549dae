import { describe, expect, expectTypeOf, it } from 'vitest';
import { asVid, dataOid, type Oid } from '../src/engine/oid.js';
import { decodeRequest } from '../src/rpc/decode.js';
import { protocol, type Request, type RequestFields, type ResultOf } from '../src/rpc/protocol.js';

const oid = dataOid(asVid(7), 3);

function decoded(header: Record<string, unknown>, payload?: Buffer) {
  const result = decodeRequest(header, payload);
  if (!result.ok) throw result.error;
  return result.value;
}

function failure(header: Record<string, unknown>, payload?: Buffer) {
  const result = decodeRequest(header, payload);
  if (result.ok) throw new Error(`accepted ${JSON.stringify(header)}`);
  return { code: result.error.code, message: result.error.message };
}

describe('protocol declaration', () => {
  it('derives request and result types from the one table', () => {
    expectTypeOf<RequestFields<'gw.write'>>().toHaveProperty('oid').toEqualTypeOf<Oid>();
    expectTypeOf<{ oid: Oid; offset: number }>().toMatchTypeOf<RequestFields<'gw.write'>>();
    expectTypeOf<{ oid: Oid }>().not.toMatchTypeOf<RequestFields<'gw.write'>>();
    expectTypeOf<Request<'cluster.recover'>['action']>().toEqualTypeOf<'force' | 'enable' | 'disable'>();
    expectTypeOf<Request<'vdi.create'>['copies']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ResultOf<'gw.read'>>().toEqualTypeOf<Buffer>();
    expectTypeOf<ResultOf<'peer.exists'>>().toEqualTypeOf<boolean>();
  });

  it('stamps every peer op with the sender epoch and id', () => {
    for (const [op, spec] of Object.entries(protocol)) {
      if (!op.startsWith('peer.')) continue;
      expect(Object.keys(spec.fields), op).toEqual(expect.arrayContaining(['epoch', 'from']));
    }
  });
});

describe('decodeRequest', () => {
  it('passes checked fields, fills booleans and optionals, drops unknown fields', () => {
    const { request } = decoded({ op: 'vdi.create', id: 4, name: 'a', size: 2n ** 40n, junk: 1 });
    expect(request).toEqual({ op: 'vdi.create', name: 'a', size: 2 ** 40, copies: undefined, hyper: false });
  });

  it('carries the data of a write and requires it', () => {
    const data = Buffer.from('abc');
    expect(decoded({ op: 'gw.write', oid, offset: 0, create: true }, data).payload).toBe(data);
    expect(failure({ op: 'gw.write', oid, offset: 0 })).toEqual({ code: 'INVALID_ARGUMENT', message: 'request needs data' });
    expect(failure({ op: 'ping' }, data).code).toBe('PROTOCOL');
  });

  it('refuses unknown ops and ill-typed or out-of-bound fields with stable codes', () => {
    expect(failure({ op: 'nope' })).toEqual({ code: 'PROTOCOL', message: 'unknown operation nope' });
    expect(failure({})).toEqual({ code: 'PROTOCOL', message: 'unknown operation (missing)' });
    expect(failure({ op: 'toString' }).code).toBe('PROTOCOL');
    expect(failure({ op: 'cluster.format', copies: 0 })).toEqual({
      code: 'INVALID_ARGUMENT',
      message: "request field 'copies' must be between 1 and 31",
    });
    expect(failure({ op: 'cluster.format', copies: 1.5 }).message).toBe("request field 'copies' must be an integer");
    expect(failure({ op: 'vdi.lookup', name: 'x'.repeat(2000) }).message).toMatch(/'name' is longer than/);
    expect(failure({ op: 'gw.read', oid: 'x', offset: 0, length: 1 }).message).toBe("request field 'oid' is not an object id");
    expect(failure({ op: 'gw.read', oid, offset: 0, length: 0 }).code).toBe('INVALID_ARGUMENT');
    expect(failure({ op: 'cluster.recover', action: 'explode' }).message).toBe(
      "request field 'action' must be one of force, enable, disable",
    );
    expect(failure({ op: 'peer.exists', oid, from: 'a:1' }).message).toBe("request field 'epoch' must be an integer");
    expect(failure({ op: 'vdi.create', name: 'a', size: 1, hyper: 'yes' }).message).toBe("request field 'hyper' must be a boolean");
  });
});
