// `dog vdi alter-copy` and `dog cluster alter-copy`: the original's prompts and messages; the
// sheep re-replicates or trims through its ordinary recovery (copies-service.ts).
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import { action, client, confirm, copiesArg, DogFailure, exitUsage, out, redundancyArg, withGlobals, type Globals } from './common.js';

const defaultCopies = 3; // SD_DEFAULT_COPIES

const alterVdiPrompt =
  "    __\n   ()'`;\n   /\\|`  Caution! Changing VDI's redundancy level will affect\n" +
  '  /  |   the VDI itself only and trigger recovery.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ';
// Unlike the original, which changed the default only, every existing VDI changes too.
const alterClusterPrompt =
  "    __\n   ()'`;\n   /\\|`  Caution! Changing cluster's redundancy level will affect\n" +
  '  /  |   all the VDIs, existing and to be created later, and trigger recovery.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ';

type Options = Globals & { copies?: string; force?: boolean };

/** -c (default 3, said so), and the "more copies than nodes" question unless -f. */
async function wantedCopies(o: Options, what: 'vdi' | 'cluster'): Promise<number> {
  // The original parsed D:P here too, only to refuse it.
  if (o.copies !== undefined && redundancyArg(o.copies)?.copyPolicy !== undefined) {
    throw new DogFailure(`Changing redundancy level of erasure coded ${what} is not supported yet.`, exitUsage);
  }
  let copies = copiesArg(o.copies);
  if (copies === undefined) {
    copies = defaultCopies;
    out(`The ${what}'s redundancy level is not specified, use ${defaultCopies} as default.\n`);
  }
  const nodes = (await client(o).nodeList()).length;
  if (!o.force && copies > nodes) {
    const question = `Number of copies (${copies}) is larger than number of nodes (${nodes}).\nAre you sure you want to continue? [yes/no]: `;
    await confirm(question);
  }
  return copies;
}

export function addVdiCopiesCommand(vdi: Command): void {
  withGlobals(vdi.command('alter-copy').description("set the vdi's redundancy level").argument('<NAME>'))
    .option('-c, --copies <COPIES>', 'number of copies')
    .option('-f, --force', 'do not ask for confirmation')
    .action(action(async (name: string, o: Options) => {
      const copies = await wantedCopies(o, 'vdi');
      const sheep = client(o);
      try {
        await sheep.lookup(name, undefined);
      } catch (error) {
        if (error instanceof SdError && error.code === 'NO_VDI') throw new DogFailure(`Reading ${name}'s vdi object failure.`);
        throw error;
      }
      if (!o.force) await confirm(alterVdiPrompt);
      let old: number;
      try {
        ({ old } = await sheep.alterVdiCopies(name, copies));
      } catch (error) {
        if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
        if (error.code === 'INVALID_ARGUMENT' || error.code === 'UNSUPPORTED') throw new DogFailure(error.message);
        throw new DogFailure(`Changing ${name}'s redundancy level failure: ${error.message}`);
      }
      out(`${name}'s redundancy level is set to ${copies}, the old one was ${old}.\n`);
    }));
}

export function addClusterCopiesCommand(cluster: Command): void {
  withGlobals(cluster.command('alter-copy').description("set the cluster's redundancy level (every VDI's too)"))
    .option('-c, --copies <COPIES>', 'number of copies')
    .option('-f, --force', 'do not ask for confirmation')
    .action(action(async (o: Options) => {
      const copies = await wantedCopies(o, 'cluster');
      if (!o.force) await confirm(alterClusterPrompt);
      let old: number;
      try {
        ({ old } = await client(o).alterClusterCopies(copies));
      } catch (error) {
        if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
        throw new DogFailure(error.code === 'INVALID_ARGUMENT' ? error.message : `Changing the cluster's redundancy level failure: ${error.message}`);
      }
      out(`The cluster's redundancy level is set to ${copies}, the old one was ${old}.\n`);
    }));
}
