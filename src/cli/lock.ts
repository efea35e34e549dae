// `dog vdi lock list` and `dog vdi lock unlock NAME`: who holds which VDI open for writing (an NBD
// client or a sheepfs mount, through which sheep, since when), and freeing a dead writer's lock.
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import type { VdiLock } from '../engine/vdi-locks.js';
import { action, client, DogFailure, exitUsage, out, withGlobals, type Globals } from './common.js';
import { formatDate } from './format.js';

/** Unlike the original (owner nodes only), each writer on its own line with its client and time. */
export function formatLockList(locks: readonly VdiLock[], raw: boolean): string {
  const sorted = [...locks].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.sinceSec - b.sinceSec));
  if (raw) return sorted.map((l) => `${l.name} ${l.node} ${l.sinceSec} ${l.shared ? 'shared' : 'exclusive'} ${l.client}\n`).join('');
  let text = '  Name        Node                  Since             Lock       Client\n';
  for (const l of sorted) {
    text += `  ${l.name.padEnd(11)} ${l.node.padEnd(21)} ${formatDate(l.sinceSec)}  ${(l.shared ? 'shared' : 'exclusive').padEnd(10)} ${l.client}\n`;
  }
  return text;
}

export function addLockCommands(vdi: Command): void {
  const lock = vdi.command('lock').description("list writers' locks on VDIs, or free one a dead client left");
  withGlobals(lock.command('list').description('list locked VDIs'))
    .action(action(async (o: Globals) => out(formatLockList(await client(o).vdiLocks(), o.raw === true))));
  withGlobals(lock.command('unlock').description('unlock locked VDI forcibly (every writer of it)').argument('[NAME]'))
    .action(action(async (name: string | undefined, o: Globals) => {
      if (name === undefined) throw new DogFailure('VDI name must be specified', exitUsage);
      try {
        await client(o).unlockVdi(name);
      } catch (error) {
        if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
        if (error.code === 'NO_OBJECT') throw new DogFailure(error.message);
        throw new DogFailure(`Failed to find VDI ${name}: ${error.message}`);
      }
    }));
}
