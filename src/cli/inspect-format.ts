// Output of dog's inspection commands (node stat, node log level, vdi graph/track/object map/
// dump-inode) in the shapes of the original (3ebe5ea dog/node.c, dog/vdi.c). Pure: data in, text out.
import type { NodeInfo } from '../cluster/driver.js';
import { oidHex, type Oid } from '../engine/oid.js';
import { Ring } from '../engine/ring.js';
import { formatSize } from '../engine/size.js';
import type { VdiEntry } from '../engine/vdi.js';
import { logLevelNames } from '../sheep/log-level.js';
import type { RequestCounters, RequestStatsData } from '../sheep/stats.js';
import type { EpochRecord } from '../store/meta.js';

const pad2 = (n: number) => String(n).padStart(2, '0');

function size(bytes: number, raw: boolean): string {
  return raw ? String(bytes) : formatSize(bytes);
}

/**
 * `node stat`: one row of client (gateway) and one of peer requests. The original printed the read
 * count under Write and the write count under Read here (not in watch mode); each is in its own
 * column. Peers have no flush, as in the original.
 */
export function formatNodeStat(stats: RequestStatsData, raw: boolean): string {
  const row = (c: RequestCounters, flush: number) =>
    `${c.active}\t${c.total}\t${c.write}\t${c.read}\t${c.remove}\t${flush}\t${size(c.receivedBytes, raw)}\t${size(c.sentBytes, raw)}\n`;
  const header = raw ? '' : 'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD\nClient\t';
  return `${header}${row(stats.client, stats.client.flush)}${raw ? '' : 'Peer\t'}${row(stats.peer, 0)}`;
}

/** `node stat -w`: as above with bandwidth and requests per second since `last` (a second ago). */
export function formatNodeStatWatch(stats: RequestStatsData, last: RequestStatsData, raw: boolean): string {
  const row = (c: RequestCounters, l: RequestCounters, flush: number) =>
    `${c.active}\t${c.total}\t${c.write}\t${c.read}\t${c.remove}\t${flush}\t${size(c.receivedBytes, raw)}\t${size(c.sentBytes, raw)}` +
    `\t${size(c.receivedBytes - l.receivedBytes, raw)}\t${size(c.sentBytes - l.sentBytes, raw)}\t${c.total - l.total}\n`;
  const header = raw ? '' : 'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD\tWRBW\tRDBW\tRPS\nClient\t';
  return `${header}${row(stats.client, last.client, stats.client.flush)}${raw ? '' : 'Peer\t'}${row(stats.peer, last.peer, 0)}`;
}

/** `node log level list`, and the list after a bad level. */
export function formatLogLevels(): string {
  return logLevelNames.map((name, level) => `${name}\t(${level})\n`).join('');
}

/** `vdi graph`: Graphviz dot, one box per VDI, its parent's arrow to it; working VDIs in red. */
export function formatVdiGraph(entries: readonly VdiEntry[], localTime: (sec: number) => Date): string {
  let text = 'digraph G {\n  node [shape = "box", fontname = "Courier"];\n\n  "0" [shape = "ellipse", label = "root"];\n\n';
  for (const e of [...entries].filter((e) => !e.deleted).sort((a, b) => a.vid - b.vid)) {
    const d = localTime(e.createdSec);
    const date = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    const snapshot = e.snapshotSec !== 0;
    const vid = e.vid.toString(16);
    text += `  "${e.parentVid.toString(16)}" -> "${vid}";\n`;
    text += `  "${vid}" [\n    group = "${e.name}",\n    label = "`;
    // The original labels the snapshot id "Tag", in hex.
    text += `Name: ${e.name.padStart(10)}\\nTag:  ${(snapshot ? e.snapId : 0).toString(16).padStart(10)}\\n`;
    text += `Size: ${formatSize(e.sizeBytes).padStart(10)}\\nDate: ${date.padStart(10)}\\nTime: ${time.padStart(10)}`;
    text += snapshot ? '"\n  ];\n\n' : '",\n    color="red"\n  ];\n\n';
  }
  return `${text}}\n`;
}

/**
 * `vdi track`: the nodes of `oid`'s copies in every epoch, newest first, as placement computes
 * them from that epoch's members. An epoch with fewer nodes than copies lists all its nodes.
 */
export function formatTrack(oid: Oid, copies: number, epochs: readonly EpochRecord[]): string {
  let text = '';
  for (const record of epochs) {
    text += `\nobj ${oidHex(oid)} locations at epoch ${record.epoch}, copies = ${copies}\n`;
    text += '---------------------------------------------------\n';
    const nodes: readonly NodeInfo[] = record.nodes.length < copies ? record.nodes : new Ring(record.nodes).placement(oid, copies);
    for (const node of nodes) text += `${node.id}\n`;
  }
  return text;
}

/** `vdi object map`: the owner (VID) of each allocated index, or of the one asked for. */
export function formatObjectMap(owners: ReadonlyArray<{ index: number; vid: number }>): string {
  return `Index       VID\n${owners.map(({ index, vid }) => `${String(index).padStart(8, '0')} ${vid.toString(16).padStart(8)}\n`).join('')}`;
}

/**
 * `vdi object dump-inode`: the original's fields. The inode here is the registry entry and the
 * owner table; what this design has no field for (VM state, erasure code, B-tree, the
 * generational references of gref) prints 0, as an inode that never used it did.
 */
export function formatDumpInode(e: VdiEntry, owners: ReadonlyArray<{ index: number; vid: number }>): string {
  const nanosecondsHex = (sec: number) => (BigInt(sec) << 32n).toString(16);
  let text = `name: ${e.name}\ntag: ${e.tag}\ncreate_time: ${nanosecondsHex(e.createdSec)}\n`;
  text += `snap_ctime: ${nanosecondsHex(e.snapshotSec)}\nvm_clock_nsec: 0\nvdi_size: ${e.sizeBytes}\nvm_state_size: 0\n`;
  text += `copy_policy: 0\nstore_policy: ${e.hyper ? 1 : 0}\nnr_copies: ${e.copies}\nblock_size_shift: ${e.blockSizeShift}\n`;
  text += `snap_id: ${e.snapId}\nvdi_id: ${e.vid.toString(16)}\nparent_vdi_id: ${e.parentVid.toString(16)}\nbtree_counter: 0\n`;
  text += `data_vdi_id:\n${owners.map(({ index, vid }) => `${index}: ${vid.toString(16)}\n`).join('')}`;
  text += `gref:\n${owners.map(({ index, vid }) => `${index}: ${vid.toString(16)}, 0, 0\n`).join('')}`;
  return text;
}
