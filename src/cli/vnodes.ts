// `dog node vnodes set N`: the vnodes of the node dog talks to (-a/-p), as the original, on a
// cluster formatted with -V.
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import { vnodesMax } from '../engine/limits.js';
import { action, client, DogFailure, exitUsage, withGlobals, type Globals } from './common.js';

export function addVnodesCommand(node: Command): void {
  const vnodes = node.command('vnodes').description('set new vnodes');
  withGlobals(vnodes.command('set').description("set the vnodes of the node asked (-a/-p); the cluster needs 'format -V'").argument('<VNODES>'))
    .action(action(async (text: string, o: Globals) => {
      if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > vnodesMax) {
        throw new DogFailure(`Invalid number of vnodes '${text}': must be an integer between 1 and ${vnodesMax}`, exitUsage);
      }
      try {
        await client(o).setVnodes(Number(text));
      } catch (error) {
        if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`Failed to execute request: ${error.message}`);
        throw error;
      }
    }));
}
