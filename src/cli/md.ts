// `dog node md info|plug|unplug`: the disks of a multi-disk sheep, in the original's shape
// (dog/node.c): `Id Size Used Avail Use% Path`, `-A` every node, `-r` raw.
import * as path from 'node:path';
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import { formatSize } from '../engine/size.js';
import type { MdNodeData } from '../rpc/protocol.js';
import { action, client, confirm, DogFailure, out, withGlobals, type Globals } from './common.js';

const caution = (line: string) => `    __\n   ()'\`;\n   /\\|\`\n  /  |   Caution! ${line}\n(/_)_|_  Are you sure you want to continue? [yes/no]: `;
const plugPrompt = caution('The directories to be plugged will be purged.');
const unplugPrompt = caution('Objects will move to the other disks after unplugging.');

export function formatMdInfo(nodes: readonly MdNodeData[], all: boolean, raw: boolean): string {
  let text = raw ? '' : 'Id\tSize\tUsed\tAvail\tUse%\tPath\n';
  nodes.forEach((entry, index) => {
    if (all && !raw) text += `Node ${index}:\n`;
    for (const disk of entry.disks) {
      const ratio = disk.sizeBytes > 0 ? Math.floor((disk.usedBytes / disk.sizeBytes) * 100) : 0;
      text += raw
        ? `${entry.node.id} ${disk.index} ${disk.sizeBytes} ${disk.usedBytes} ${disk.availableBytes} ${ratio}% ${disk.path}\n`
        : `${String(disk.index).padStart(2)}\t${formatSize(disk.sizeBytes)}\t${formatSize(disk.usedBytes)}\t${formatSize(disk.availableBytes)}\t${String(ratio).padStart(3)}%\t${disk.path}\n`;
    }
  });
  return text;
}

/** DIR[,DIR…], each made absolute against dog's own directory (the sheep is on this host). */
function diskList(text: string): string[] {
  const dirs = text.split(',');
  if (dirs.some((dir) => dir === '')) throw new DogFailure(`Invalid disk list '${text}': an empty directory name`);
  return dirs.map((dir) => path.resolve(dir));
}

export function addMdCommand(node: Command): void {
  const md = node.command('md').description('show and change the disks of a multi-disk sheep');
  withGlobals(md.command('info').description('show multi-disk information'))
    .option('-A, --all', 'show md information of all the nodes')
    .action(action(async (o: Globals & { all?: boolean }) => {
      const all = o.all === true;
      let nodes: MdNodeData[];
      try {
        nodes = await client(o).mdInfo(all);
      } catch (error) {
        if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`failed to get multi-disk information: ${error.message}`);
        throw error;
      }
      out(formatMdInfo(nodes, all, o.raw === true));
    }));
  for (const [name, plug, description, prompt] of [
    ['plug', true, 'plug more disk(s) into node', plugPrompt],
    ['unplug', false, 'unplug disk(s) from node', unplugPrompt],
  ] as const) {
    withGlobals(md.command(name).description(description).argument('<DIR[,DIR...]>'))
      .option('-f, --force', 'ignore the confirmation')
      .action(action(async (text: string, o: Globals & { force?: boolean }) => {
        const dirs = diskList(text);
        if (!o.force) await confirm(prompt);
        try {
          await client(o).mdPlug(dirs, plug);
        } catch (error) {
          if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`Failed to execute request: ${error.message}`);
          throw error;
        }
      }));
  }
}
