// The pure rules behind dog's data commands: attribute changes, writers' locks, the registry's
// attributes in its JSON, and the lock list's text.
import { describe, expect, it } from 'vitest';
import { formatLockList } from '../src/cli/lock.js';
import { SdError } from '../src/engine/errors.js';
import { attrsPerVdiMax, attrValueBytesMax, planAttr } from '../src/engine/vdi-attrs.js';
import { checkLock, type VdiLock } from '../src/engine/vdi-locks.js';
import { planCreate, VdiRegistry } from '../src/engine/vdi.js';
import { maskDates } from './support/mask.js';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (error) {
    return error instanceof SdError ? `${error.code}: ${error.message}` : String(error);
  }
  return undefined;
}

describe('attributes', () => {
  it('plans sets, -x, deletes and refuses what the original refused', () => {
    const current = new Map([['k', Buffer.from('v').toString('base64')]]);
    expect(planAttr(current, { name: 'vm', key: 'k', value: Buffer.from('w'), exclusive: false })).toEqual({ name: 'vm', key: 'k', value: 'dw==' });
    expect(code(() => planAttr(current, { name: 'vm', key: 'k', value: Buffer.from('w'), exclusive: true }))).toBe("VDI_EXISTS: The attribute 'k' already exists");
    expect(planAttr(current, { name: 'vm', key: 'k', value: null, exclusive: false })).toEqual({ name: 'vm', key: 'k', value: null });
    expect(code(() => planAttr(undefined, { name: 'vm', key: 'k', value: null, exclusive: false }))).toBe("NO_OBJECT: Attribute 'k' not found");
    expect(code(() => planAttr(undefined, { name: 'vm', key: '', value: Buffer.alloc(1), exclusive: false }))).toBe('INVALID_ARGUMENT: Please specify the attribute key');
    expect(code(() => planAttr(undefined, { name: 'vm', key: 'k', value: Buffer.alloc(attrValueBytesMax + 1), exclusive: false }))).toMatch(/^TOO_LARGE/);
    const full = new Map(Array.from({ length: attrsPerVdiMax }, (_, i) => [`k${i}`, ''] as [string, string]));
    expect(code(() => planAttr(full, { name: 'vm', key: 'new', value: Buffer.alloc(1), exclusive: false }))).toMatch(/^NO_SPACE/);
    expect(planAttr(full, { name: 'vm', key: 'k0', value: Buffer.alloc(1), exclusive: false }).value).toBe('AA==');
  });

  it('live in the registry JSON, count as versions, and go with the last VDI of the name', () => {
    const registry = new VdiRegistry();
    const entry = planCreate(registry, { name: 'vm', sizeBytes: 1 << 22, copies: 1, hyper: false, blockSizeShift: 22, nowSec: 1 });
    registry.apply([entry]);
    // No attributes: the JSON is what it was before attributes existed.
    expect(Object.keys(registry.toJson() as object)).toEqual(['version', 'entries']);
    registry.applyAttr({ name: 'vm', key: 'a', value: 'eA==' });
    expect(registry.version).toBe(2);
    const copy = VdiRegistry.fromJson(registry.toJson());
    expect(copy.attrs('vm')?.get('a')).toBe('eA==');
    expect(JSON.stringify(copy.toJson())).toBe(JSON.stringify(registry.toJson()));
    registry.apply([{ ...entry, deleted: true }]);
    expect(registry.attrs('vm')).toBeUndefined();
  });
});

describe('writers locks', () => {
  const lock = (node: string, shared: boolean, name = 'vm'): VdiLock => ({ name, holder: `${node}/1`, node, client: `nbd ${node}`, sinceSec: 0, shared });
  it('lets writers through one node share, two nodes only when both are shared', () => {
    expect(code(() => checkLock([lock('a', false)], lock('a', false)))).toBeUndefined();
    expect(code(() => checkLock([lock('a', false)], lock('b', false)))).toBe(
      "VDI_LOCKED: VDI vm is locked by nbd a through a: open it shared from every node, or free it with 'dog vdi lock unlock vm'",
    );
    expect(code(() => checkLock([lock('a', true)], lock('b', false)))).toMatch(/^VDI_LOCKED: VDI vm is locked by nbd a through a \(shared\)/);
    expect(code(() => checkLock([lock('a', false)], lock('b', true)))).toMatch(/^VDI_LOCKED/);
    expect(code(() => checkLock([lock('a', true)], lock('b', true)))).toBeUndefined();
    expect(code(() => checkLock([lock('a', false, 'other')], lock('b', false)))).toBeUndefined();
  });

  it('lists each writer on its line, dates masked', () => {
    const locks = [
      { ...lock('127.0.0.1:7001', true), sinceSec: 1_800_000_000, client: 'nbd 127.0.0.1:40000' },
      { ...lock('127.0.0.1:7000', false, 'alice'), sinceSec: 1_800_000_000, client: 'sheepfs host pid 12 on /mnt' },
    ];
    expect(maskDates(formatLockList(locks, false))).toBe(
      '  Name        Node                  Since             Lock       Client\n' +
        '  alice       127.0.0.1:7000        YYYY-MM-DD HH:MM  exclusive  sheepfs host pid 12 on /mnt\n' +
        '  vm          127.0.0.1:7001        YYYY-MM-DD HH:MM  shared     nbd 127.0.0.1:40000\n',
    );
    expect(formatLockList(locks, true)).toBe('alice 127.0.0.1:7000 1800000000 exclusive sheepfs host pid 12 on /mnt\nvm 127.0.0.1:7001 1800000000 shared nbd 127.0.0.1:40000\n');
  });
});

describe('--help of every new command', () => {
  it('prints usage, description and options, exit 0', async () => {
    const { dog } = await import('./support/cluster.js');
    const usages: Array<[string[], string]> = [
      [['vdi', 'setattr'], 'Usage: dog vdi setattr [options] <NAME> [KEY] [VALUE]\n\nset a VDI attribute (the value from stdin when not given)\n'],
      [['vdi', 'getattr'], 'Usage: dog vdi getattr [options] <NAME> [KEY]\n\nget a VDI attribute\n'],
      [['vdi', 'backup'], 'Usage: dog vdi backup [options] <NAME>\n\nwrite snapshot TO (or what changed since FROM) as a backup stream to stdout\n'],
      [['vdi', 'restore'], 'Usage: dog vdi restore [options] <NAME>\n\nroll NAME back to snapshot SNAP and apply the backup stream on stdin\n'],
      [['vdi', 'lock', 'list'], 'Usage: dog vdi lock list [options]\n\nlist locked VDIs\n'],
      [['vdi', 'lock', 'unlock'], 'Usage: dog vdi lock unlock [options] [NAME]\n\nunlock locked VDI forcibly (every writer of it)\n'],
      [['vdi', 'alter-copy'], "Usage: dog vdi alter-copy [options] <NAME>\n\nset the vdi's redundancy level\n"],
      [['cluster', 'alter-copy'], "Usage: dog cluster alter-copy [options]\n\nset the cluster's redundancy level (every VDI's too)\n"],
      [['node', 'vnodes', 'set'], "Usage: dog node vnodes set [options] <VNODES>\n\nset the vnodes of the node asked (-a/-p); the cluster needs 'format -V'\n"],
    ];
    for (const [args, head] of usages) {
      const result = await dog([...args, '--help']);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.out.startsWith(`${head}\nOptions:\n  -a, --address <ADDR>   specify the daemon address (default: "127.0.0.1")\n`), result.out).toBe(true);
    }
    const backup = (await dog(['vdi', 'backup', '--help'])).out;
    expect(backup.split('\n').slice(-4).join('\n')).toBe(
      '  -s, --snapshot <TO>    snapshot tag or id to back up\n  -F, --from <FROM>      older snapshot: only the blocks changed since it\n  -h, --help             display help for command\n',
    );
  });
});
