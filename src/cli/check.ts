// dog vdi check, dog cluster check, dog node scrub: the original's check and repair (dog/vdi.c
// at 3ebe5ea), its messages kept, done object by object by the sheep dog talks to
// (object.check, src/sheep/object-check.ts). With checksums a single copy that passes them is
// enough to repair from, majority or not: the line says so.
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import { asVid, dataOid, inodeOid, oidHex, type Oid } from '../engine/oid.js';
import { tableEntriesPerChunk } from '../engine/limits.js';
import { objectCount, parseSnapshotRef, type VdiEntry } from '../engine/vdi.js';
import type { ObjectCheckData, ScrubState } from '../rpc/protocol.js';
import type { SheepClient } from '../rpc/sheep-client.js';
import type { NodeInfo } from '../cluster/driver.js';
import { VolumeIo } from '../volume/volume-io.js';

/** Objects checked at once. */
const checkWindow = 8;
const exitFailure = 1;
const exitUsage = 64;

export interface CheckGlobals {
  raw?: boolean;
}

/** What dog.ts lends: its option set, client, error handling and volume opening. */
export interface DogParts<G extends CheckGlobals> {
  withGlobals(command: Command): Command;
  client(globals: G): SheepClient;
  action<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void>;
  failure(message: string, exitCode?: number): Error;
  openVolume(sheep: SheepClient, name: string, ref: ReturnType<typeof parseSnapshotRef>): Promise<VolumeIo>;
}

/** The original's progress bar, on a terminal only: `  42.0 % [====>    ] 420 MB / 1.0 GB`. */
export function progressLine(done: number, total: number, width: number): string {
  const barLength = Math.max(10, width - 30);
  let bar = '';
  for (let i = 0; i < barLength; i++) {
    if ((total * (i + 1)) / barLength <= done) bar += '=';
    else if ((total * i) / barLength <= done && done < (total * (i + 1)) / barLength) bar += '>';
    else bar += ' ';
  }
  const percent = total === 0 ? 100 : (done / total) * 100;
  return `\r${percent.toFixed(1).padStart(5)} % [${bar}] ${done} / ${total}`.padEnd(width + 1).slice(0, width + 1);
}

function showProgress(done: number, total: number): void {
  if (!process.stdout.isTTY) return;
  process.stdout.write(progressLine(done, total, process.stdout.columns || 80));
  if (done === total) process.stdout.write('\n');
}

/** The objects of a VDI that exist: its owner-table chunks, then each data object it has an owner for. */
async function* objectsOf(volume: VolumeIo, entry: VdiEntry): AsyncGenerator<Oid> {
  const vid = asVid(entry.vid);
  const objects = objectCount(entry);
  for (let chunk = 0; chunk < Math.max(1, Math.ceil(objects / tableEntriesPerChunk)); chunk++) yield inodeOid(vid, chunk);
  for (let index = 0; index < objects; index++) {
    const owner = await volume.owner(index);
    if (owner !== 0) yield dataOid(asVid(owner), index);
  }
}

/** Runs `work` over `items` with `checkWindow` in flight; `report` sees the results in order. */
async function inOrder<T, R>(items: AsyncIterable<T>, work: (item: T) => Promise<R>, report: (item: T, result: R) => void): Promise<void> {
  const pending: Array<{ item: T; result: Promise<R> }> = [];
  for await (const item of items) {
    const result = work(item);
    result.catch(() => undefined);
    pending.push({ item, result });
    if (pending.length >= checkWindow) {
      const next = pending.shift()!;
      report(next.item, await next.result);
    }
  }
  for (const next of pending) report(next.item, await next.result);
}

interface Outcome {
  stdout: string;
  stderr: string;
  failed: boolean;
}

/** The lines of one object's check, as the original words them. */
export function describeCheck(oid: Oid, result: ObjectCheckData): Outcome {
  const hex = oidHex(oid);
  const note = result.onlyVerified ? ' (from the only copy that passes its checksums)' : '';
  let stdout = '';
  for (const copy of result.copies) {
    if (copy.fixed) stdout += `fixed ${copy.state === 'missing' ? 'missing' : 'replica'} ${hex}${note}\n`;
  }
  if (result.outcome === 'no-majority') return { stdout, stderr: `no majority of ${hex}\n`, failed: true };
  if (result.outcome === 'none') return { stdout, stderr: `no node has ${hex}\n`, failed: true };
  if (result.outcome === 'busy') return { stdout, stderr: `${hex} is being recovered: check again once recovery is done\n`, failed: true };
  if (result.outcome === 'all-damaged') return { stdout, stderr: `no copy of ${hex} passes its checksums\n`, failed: true };
  return { stdout, stderr: '', failed: false };
}

/** Checks and repairs every object of one VDI; true when nothing was left unrepaired. */
async function checkVdi(sheep: SheepClient, volume: VolumeIo, entry: VdiEntry): Promise<boolean> {
  const objectBytes = 2 ** entry.blockSizeShift;
  let done = 0;
  let fine = true;
  showProgress(0, entry.sizeBytes);
  await inOrder(
    objectsOf(volume, entry),
    (oid) => sheep.rpc.call('object.check', { oid, existOnly: false }),
    (oid, result) => {
      const outcome = describeCheck(oid, result);
      process.stdout.write(outcome.stdout);
      process.stderr.write(outcome.stderr);
      if (outcome.failed) fine = false;
      if ((oid & (1n << 63n)) === 0n) {
        done = Math.min(entry.sizeBytes, (Number(oid & 0xffffffffn) + 1) * objectBytes);
        showProgress(done, entry.sizeBytes);
      }
    },
  );
  if (done < entry.sizeBytes) showProgress(entry.sizeBytes, entry.sizeBytes);
  process.stdout.write(`finish check&repair ${entry.name}\n`);
  return fine;
}

/** `-e`: only whether every copy exists. */
async function checkExist(sheep: SheepClient, volume: VolumeIo, entry: VdiEntry): Promise<boolean> {
  let lost = 0;
  await inOrder(
    objectsOf(volume, entry),
    (oid) => sheep.rpc.call('object.check', { oid, existOnly: true }),
    (oid, result) => {
      for (const copy of result.copies) {
        if (copy.state !== 'missing') continue;
        lost += 1;
        process.stdout.write(`[${copy.node}] oid ${oidHex(oid)} is missing.\n`);
      }
    },
  );
  process.stdout.write(lost === 0 ? `${entry.name} is fine, no object is missing.\n` : `${entry.name} lost ${lost} object(s).\n`);
  return lost === 0;
}

function formatScrub(rows: Array<{ node: NodeInfo; state: ScrubState | null }>, raw: boolean): string {
  let text = raw ? '' : '  Id   Host:Port          Scrubbing   Progress   Passes  Damaged  Repaired\n';
  rows.forEach((row, i) => {
    const s = row.state;
    const progress = s && s.total > 0 ? ((s.done * 100) / s.total).toFixed(1) : s?.running ? '0.0' : '-';
    const cells = s ? [s.running ? 'yes' : 'no', s.running ? `${progress}%` : '-', s.passes, s.damaged, s.repaired] : ['?', '-', '-', '-', '-'];
    text += raw
      ? `${i} ${row.node.id} ${cells.join(' ')}\n`
      : `${String(i).padStart(4)}   ${row.node.id.padEnd(20)}${String(cells[0]).padStart(8)}${String(cells[1]).padStart(11)}${String(cells[2]).padStart(9)}${String(cells[3]).padStart(9)}${String(cells[4]).padStart(10)}\n`;
  });
  return text;
}

export function buildCheck<G extends CheckGlobals>(program: Command, dog: DogParts<G>): void {
  const vdi = program.commands.find((c) => c.name() === 'vdi')!;
  const cluster = program.commands.find((c) => c.name() === 'cluster')!;
  const node = program.commands.find((c) => c.name() === 'node')!;
  dog
    .withGlobals(vdi.command('check').description("check and repair image's consistency").argument('<NAME>'))
    .option('-e, --exist', 'only check that every copy exists')
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id')
    .action(
      dog.action(async (name: string, o: G & { exist?: boolean; snapshot?: string }) => {
        const sheep = dog.client(o);
        const volume = await dog.openVolume(sheep, name, parseSnapshotRef(o.snapshot));
        const entry = await sheep.lookup(name, parseSnapshotRef(o.snapshot));
        const fine = o.exist ? await checkExist(sheep, volume, entry) : await checkVdi(sheep, volume, entry);
        if (!fine) throw dog.failure('', exitFailure);
      }),
    );
  dog.withGlobals(cluster.command('check').description('check and repair cluster')).action(
    dog.action(async (o: G) => {
      const sheep = dog.client(o);
      let fine = true;
      for (const entry of (await sheep.vdiAll()).filter((e) => !e.deleted)) {
        if (!(await checkVdi(sheep, new VolumeIo(sheep, entry), entry))) fine = false;
      }
      if (!fine) throw dog.failure('', exitFailure);
    }),
  );
  dog
    .withGlobals(
      node
        .command('scrub')
        .description('show scrubbing per node; set-throttle MAX INTERVAL | get-throttle')
        .argument('[ACTION]', 'set-throttle or get-throttle')
        .argument('[MAX]', 'objects checked per interval (1-1000)')
        .argument('[INTERVAL]', 'interval in milliseconds (1-1000)'),
    )
    .action(
      dog.action(async (verb: string | undefined, maxText: string | undefined, intervalText: string | undefined, o: G) => {
        const sheep = dog.client(o);
        if (verb === undefined) {
          process.stdout.write(formatScrub(await sheep.rpc.call('scrub.state', {}), o.raw === true));
          return;
        }
        if (verb === 'get-throttle') {
          const throttle = await sheep.rpc.call('scrub.get-throttle', {});
          process.stdout.write(`max ${throttle.maxObjects} objects per ${throttle.intervalMs} ms\n`);
          return;
        }
        if (verb !== 'set-throttle') throw dog.failure(`Unknown scrub action '${verb}': use set-throttle or get-throttle`, exitUsage);
        if (maxText === undefined || intervalText === undefined) throw dog.failure('Usage: dog node scrub set-throttle MAX INTERVAL', exitUsage);
        if (!/^\d+$/.test(maxText) || Number(maxText) < 1 || Number(maxText) > 1000) throw dog.failure(`Invalid max '${maxText}': must be 1 to 1000 objects`);
        if (!/^\d+$/.test(intervalText) || Number(intervalText) < 1 || Number(intervalText) > 1000) throw dog.failure(`Invalid interval '${intervalText}': must be 1 to 1000 ms`);
        try {
          await sheep.rpc.call('scrub.throttle', { max: Number(maxText), interval: Number(intervalText) });
        } catch (error) {
          if (error instanceof SdError && error.code === 'NETWORK' && error.message.startsWith('could not reach')) throw dog.failure(`Failed to set the scrub throttle: ${error.message}`);
          throw error;
        }
        process.stdout.write(`max ${Number(maxText)} objects per ${Number(intervalText)} ms\n`);
      }),
    );
}
