// The pure parts of the zookeeper driver and client: the --cluster spec, the znode layout, the
// repeat filter, and the jute records (the client itself runs against a real server in
// test/cluster-driver.test.ts and test/zookeeper-cluster.test.ts).
import { describe, expect, it } from 'vitest';
import { parseZkSpec, RepeatFilter, zkAncestry, zkLayout } from '../src/cluster/zk-layout.js';
import { decodeConnect, encodeConnect, JuteReader, JuteWriter } from '../src/io/zk-jute.js';

describe('zookeeper --cluster spec', () => {
  it('reads servers, a root and the session timeout', () => {
    expect(parseZkSpec('10.0.0.1:2181')).toEqual({ servers: [{ host: '10.0.0.1', port: 2181 }], sessionTimeoutMs: 10_000, root: '/sheepdog' });
    expect(parseZkSpec('a:1,[fd00::1]:2182/lab/one,timeout=3')).toEqual({
      servers: [
        { host: 'a', port: 1 },
        { host: 'fd00::1', port: 2182 },
      ],
      sessionTimeoutMs: 3000,
      root: '/lab/one',
    });
  });

  it('refuses malformed specs in one line naming the problem', () => {
    const message = (text: string): string => {
      try {
        parseZkSpec(text);
        return 'accepted';
      } catch (error) {
        return (error as Error).message;
      }
    };
    expect(message('')).toBe("invalid --cluster 'zookeeper:': '' is not HOST:PORT");
    expect(message('host')).toBe("invalid --cluster 'zookeeper:host': 'host' is not HOST:PORT");
    expect(message('h:99999')).toBe("invalid --cluster 'zookeeper:h:99999': 'h:99999' is not HOST:PORT");
    expect(message('h:1,timeout=0')).toBe("invalid --cluster 'zookeeper:h:1,timeout=0': timeout must be an integer from 1 to 300 seconds");
    expect(message('timeout=5')).toBe("invalid --cluster 'zookeeper:timeout=5': no ZooKeeper server given");
    expect(message('h:1/a b')).toMatch(/is not a znode path/);
  });
});

describe('zookeeper znode layout', () => {
  it('names queue entries as ZooKeeper numbers sequential nodes', () => {
    const z = zkLayout('/sheepdog');
    expect(z.queueEntryPath(0)).toBe('/sheepdog/queue/ev-0000000000');
    expect(z.queueEntryPath(1234)).toBe('/sheepdog/queue/ev-0000001234');
    expect(z.queueAppendPath).toBe('/sheepdog/queue/ev-');
    expect(z.memberPath('ab')).toBe('/sheepdog/members/ab');
    expect(zkAncestry('/lab/one')).toEqual(['/lab', '/lab/one']);
  });

  it('drops a re-sent sequenced event, keeps everything else', () => {
    const filter = new RepeatFilter();
    const notify = (inc: string, seq: number) => ({ t: 'notify' as const, inc, seq, message: seq });
    expect(filter.fresh(notify('a', 0))).toBe(true);
    expect(filter.fresh(notify('a', 1))).toBe(true);
    expect(filter.fresh(notify('a', 1))).toBe(false);
    expect(filter.fresh({ t: 'block', inc: 'a', seq: 1 })).toBe(false);
    expect(filter.fresh(notify('b', 0))).toBe(true);
    expect(filter.fresh({ t: 'block', inc: 'a', seq: 2 })).toBe(true);
    expect(filter.fresh({ t: 'leave', inc: 'a', node: 'x' })).toBe(true);
    expect(filter.fresh({ t: 'leave', inc: 'a', node: 'x' })).toBe(true);
  });
});

describe('jute records', () => {
  it('round-trips the session handshake', () => {
    const request = encodeConnect({ lastZxidSeen: 7n, timeoutMs: 3000, sessionId: 0x1234n, password: Buffer.alloc(16, 1) });
    const r = new JuteReader(request.subarray(4));
    expect(request.readInt32BE(0)).toBe(request.length - 4);
    expect([r.int(), r.long(), r.int(), r.long(), r.buffer()?.length, r.bool(), r.remaining]).toEqual([0, 7n, 3000, 0x1234n, 16, false, 0]);
    const response = new JuteWriter().int(0).int(4000).long(99n).buffer(Buffer.alloc(16, 2)).bool(false).finish();
    expect(decodeConnect(response.subarray(4))).toEqual({ timeoutMs: 4000, sessionId: 99n, password: Buffer.alloc(16, 2) });
  });

  it('refuses a truncated packet or an impossible vector', () => {
    expect(() => new JuteReader(Buffer.from([0, 0])).int()).toThrow(/truncated/);
    expect(() => new JuteReader(Buffer.from([0, 0, 0, 9, 1])).buffer()).toThrow(/truncated/);
    expect(() => new JuteReader(Buffer.from([0x7f, 0, 0, 0])).strings()).toThrow(/vector/);
  });
});
