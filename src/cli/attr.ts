// `dog vdi setattr` / `dog vdi getattr`: the original's options, messages and exit codes.
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import { attrValueBytesMax } from '../engine/vdi-attrs.js';
import { action, client, DogFailure, exitUsage, withGlobals, type Globals } from './common.js';

/** The original's exit codes for an existing and a missing attribute (dog.h). */
const exitExists = 3;
const exitMissing = 5;

/** Reads stdin whole, refusing more than an attribute may hold rather than buffering it. */
async function readValue(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > attrValueBytesMax) throw new DogFailure(`Failed to set attribute: the value is over ${attrValueBytesMax} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, bytes);
}

function attrFailure(error: unknown, what: string): never {
  if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
  if (error.code === 'VDI_EXISTS') throw new DogFailure(error.message, exitExists);
  if (error.code === 'NO_OBJECT') throw new DogFailure(error.message, exitMissing);
  if (error.code === 'NO_VDI') throw new DogFailure('VDI not found', exitMissing);
  throw new DogFailure(`${what}: ${error.message}`);
}

export function addAttrCommands(vdi: Command): void {
  withGlobals(
    vdi
      .command('setattr')
      .description('set a VDI attribute (the value from stdin when not given)')
      .argument('<NAME>')
      .argument('[KEY]')
      .argument('[VALUE]'),
  )
    .option('-d, --delete', 'delete the attribute')
    .option('-x, --exclusive', 'only if the key does not exist yet (atomic across the cluster)')
    .action(action(async (name: string, key: string | undefined, value: string | undefined, o: Globals & { delete?: boolean; exclusive?: boolean }) => {
      if (key === undefined) throw new DogFailure('Please specify the attribute key', exitUsage);
      const bytes = o.delete ? null : value !== undefined ? Buffer.from(value) : await readValue();
      try {
        await client(o).setAttr(name, key, bytes, o.exclusive === true);
      } catch (error) {
        attrFailure(error, 'Failed to set attribute');
      }
    }));
  withGlobals(vdi.command('getattr').description('get a VDI attribute').argument('<NAME>').argument('[KEY]'))
    .action(action(async (name: string, key: string | undefined, o: Globals) => {
      if (key === undefined) throw new DogFailure('Please specify the attribute key', exitUsage);
      let value: Buffer;
      try {
        value = await client(o).getAttr(name, key);
      } catch (error) {
        attrFailure(error, 'Failed to find attribute oid');
      }
      process.stdout.write(value);
    }));
}
