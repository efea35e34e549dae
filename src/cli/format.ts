// Output of `dog` (and of sheepfs's info files), in the original's shapes. Pure: data in, text out.
import type { NodeInfo } from '../cluster/driver.js';
import { redundancyText } from '../engine/ec-layout.js';
import { formatSize } from '../engine/size.js';
import { vdiKind, type VdiEntry } from '../engine/vdi.js';
import type { ClusterInfoData, NodeStatData, VdiUsageData } from '../rpc/protocol.js';

export type { ClusterInfoData, NodeStatData, VdiUsageData };

const pad2 = (n: number) => String(n).padStart(2, '0');

/** `2026-11-23 16:27` (minutes) or with seconds, local time as the original printed. */
export function formatDate(sec: number, withSeconds = false): string {
  const d = new Date(sec * 1000);
  const date = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  return withSeconds ? `${date}:${pad2(d.getSeconds())}` : date;
}

const weekdays = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3): `Mon Nov 23 16:27:02 2026`. */
export function formatCtime(ms: number): string {
  const d = new Date(ms);
  return `${weekdays[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ${d.getFullYear()}`;
}

export function statusLine(info: ClusterInfoData): string {
  switch (info.status) {
    case 'unformatted':
      return 'Waiting for cluster to be formatted';
    case 'waiting':
      return 'Waiting for other nodes to join cluster';
    case 'shutdown':
      return 'System is shutting down';
    case 'running':
      return `running, auto-recovery ${info.recoveryEnabled ? 'enabled' : 'disabled'}`;
  }
}

/**
 * `cluster info` as the original printed it: with -r no labels or headers; with -v the store,
 * the vnodes strategy (fixed after `format -V`, else auto: `cluster reweight` weighs nodes by capacity)
 * and the vnode mode.
 */
export function formatClusterInfo(info: ClusterInfoData, raw: boolean, verbose = false): string {
  const label = (text: string) => (raw ? '' : text);
  let text = `${label('Cluster status: ')}${statusLine(info)}\n`;
  if (verbose) {
    const running = info.status === 'running' && info.config !== null;
    text += `${label('Cluster store: ')}${running ? `plain with ${redundancyText(info.config!.copies, info.config!.copyPolicy)} redundancy policy` : statusLine(info)}\n`;
    if (running) text += `${label('Cluster vnodes strategy: ')}${info.config!.fixedVnodes ? 'fixed' : 'auto'}\n`;
    text += `${label('Cluster vnode mode: ')}node\n`;
  } else {
    text += '\n';
  }
  if (!info.config || info.epochs.length === 0) return text;
  if (!raw) text += `Cluster created at ${formatCtime(info.config.createdMs)}\n\nEpoch Time           Version [Host:Port:V-Nodes,,,]\n`;
  for (const record of info.epochs) {
    const nodes = record.nodes.map((n) => `${n.id}:${n.vnodes}`).join(', ');
    text += raw ? `${record.timeSec} ${record.epoch} [${nodes}]\n` : `${formatDate(record.timeSec, true)} ${String(record.epoch).padStart(6)} [${nodes}]\n`;
  }
  return text;
}

export function formatNodeList(nodes: readonly NodeInfo[], raw: boolean): string {
  if (raw) return nodes.map((n, i) => `${i} ${n.id} ${n.vnodes} ${n.zone}\n`).join('');
  let text = '  Id   Host:Port         V-Nodes       Zone\n';
  nodes.forEach((n, i) => {
    text += `${String(i).padStart(4)}   ${n.id.padEnd(20)}\t${String(n.vnodes).padStart(2)}${String(n.zone).padStart(11)}\n`;
  });
  return text;
}

/** `df`-like sizes of `node info`: whole units above 10, as strnumber. */
function size(bytes: number, raw: boolean): string {
  return raw ? String(bytes) : formatSize(bytes);
}

function percent(used: number, total: number): string {
  return `${String(total > 0 ? Math.floor((used * 100) / total) : 0).padStart(3)}%`;
}

/** `node info`: with -r no header, fields apart by single spaces, the total on one line. */
export function formatNodeInfo(stats: readonly NodeStatData[], virtualBytes: number, raw: boolean): string {
  let text = raw ? '' : 'Id\tSize\tUsed\tAvail\tUse%\n';
  let used = 0;
  let available = 0;
  stats.forEach((s, i) => {
    const total = s.usedBytes + s.availableBytes;
    used += s.usedBytes;
    available += s.availableBytes;
    text += raw
      ? `${i} ${total} ${s.usedBytes} ${s.availableBytes} ${percent(s.usedBytes, total).trim()}\n`
      : `${String(i).padStart(2)}\t${size(total, raw)}\t${size(s.usedBytes, raw)}\t${size(s.availableBytes, raw)}\t${percent(s.usedBytes, total)}\n`;
  });
  const totalBytes = used + available;
  if (raw) return `${text}Total ${totalBytes} ${used} ${available} ${percent(used, totalBytes).trim()} ${virtualBytes}\n`;
  text += `Total\t${size(totalBytes, raw)}\t${size(used, raw)}\t${size(available, raw)}\t${percent(used, totalBytes)}\n\n`;
  text += `Total virtual image size\t${size(virtualBytes, raw)}\n`;
  return text;
}

/** In raw output a name is one field: whitespace and backslashes escaped, as the original did. */
function rawName(name: string): string {
  return name.replace(/[\s\\]/g, (c) => `\\${c}`);
}

export function formatVdiList(rows: readonly VdiUsageData[], raw: boolean): string {
  let text = raw ? '' : '  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift\n';
  for (const { entry, usedBytes, sharedBytes } of rows) {
    const kind = vdiKind(entry);
    const id = kind === 'snapshot' ? entry.snapId : 0;
    const vid = entry.vid.toString(16);
    if (raw) {
      const mark = kind === 'snapshot' ? 's' : kind === 'clone' ? 'c' : '=';
      text += `${mark} ${rawName(entry.name)} ${id} ${entry.sizeBytes} ${usedBytes} ${sharedBytes} ${entry.createdSec} ${vid} ${redundancyText(entry.copies, entry.copyPolicy)} ${entry.tag} ${entry.blockSizeShift}\n`;
    } else {
      const mark = kind === 'snapshot' ? 's' : kind === 'clone' ? 'c' : ' ';
      text +=
        `${mark} ${entry.name.padEnd(8)} ${String(id).padStart(5)} ${formatSize(entry.sizeBytes).padStart(7)}` +
        ` ${formatSize(usedBytes).padStart(7)} ${formatSize(sharedBytes).padStart(7)} ${formatDate(entry.createdSec)}` +
        `  ${vid.padStart(7)} ${redundancyText(entry.copies, entry.copyPolicy).padStart(6)} ${entry.tag.padStart(13)} ${String(entry.blockSizeShift).padStart(3)}\n`;
    }
  }
  return text;
}

interface TreeNode {
  label: string;
  children: TreeNode[];
}

/**
 * `vdi tree`, pstree style: one tree per VDI name; a snapshot shows when it began, the working
 * VDI `(you are here)`. Deleted VDIs are skipped and their children hang from the nearest live
 * ancestor, so the tree stays whole when a snapshot in the middle of a chain is deleted.
 */
export function formatVdiTree(all: readonly VdiEntry[]): string {
  const byVid = new Map(all.map((e) => [e.vid, e]));
  const roots = new Map<string, TreeNode>();
  const nodes = new Map<number, TreeNode>();
  const liveAncestor = (entry: VdiEntry): VdiEntry | undefined => {
    let parent = byVid.get(entry.parentVid);
    while (parent && parent.deleted) parent = byVid.get(parent.parentVid);
    return parent && parent.name === entry.name ? parent : undefined;
  };
  // As the original: a snapshot shows its inode's creation time, when that state began.
  const label = (e: VdiEntry) => (e.snapshotSec !== 0 ? `[${formatDate(e.createdSec)}]` : '(you are here)');
  const live = all.filter((e) => !e.deleted);
  for (const entry of live) nodes.set(entry.vid, { label: label(entry), children: [] });
  for (const entry of live) {
    const node = nodes.get(entry.vid)!;
    const parent = liveAncestor(entry);
    if (parent) {
      nodes.get(parent.vid)!.children.push(node);
    } else {
      let root = roots.get(entry.name);
      if (!root) {
        root = { label: entry.name, children: [] };
        roots.set(entry.name, root);
      }
      root.children.push(node);
    }
  }
  const lines: string[] = [];
  for (const root of roots.values()) drawTree(root, '', lines, true);
  return lines.map((l) => `${l}\n`).join('');
}

function drawTree(node: TreeNode, prefix: string, lines: string[], startLine: boolean): void {
  if (startLine) lines.push(prefix + node.label);
  else lines[lines.length - 1] += node.label;
  const column = lines[lines.length - 1]!.length;
  node.children.forEach((child, index) => {
    const single = node.children.length === 1;
    const last = index === node.children.length - 1;
    if (index === 0) {
      lines[lines.length - 1] += single ? '---' : '-+-';
    } else {
      lines.push(`${' '.repeat(column + 1)}${last ? '`-' : '|-'}`);
    }
    drawTree(child, '', lines, false);
    // Continue the vertical bar through the lines a non-last child added.
    if (!last) {
      for (let i = lines.length - 1; i >= 0 && lines[i]!.length > column + 1 && lines[i]![column + 1] === ' '; i--) {
        lines[i] = `${lines[i]!.slice(0, column + 1)}|${lines[i]!.slice(column + 2)}`;
      }
    }
  });
}

export interface RecoveryRow {
  node: NodeInfo;
  state: { running: boolean; total: number; done: number } | null;
}

/** `node recovery`: the nodes still recovering, with progress (never `-nan%` at the start). */
export function formatRecovery(rows: readonly RecoveryRow[], raw: boolean): string {
  let text = raw ? '' : 'Nodes In Recovery:\n  Id   Host:Port         V-Nodes       Zone       Progress\n';
  rows.forEach((row, i) => {
    if (!row.state?.running) return;
    const progress = row.state.total > 0 ? (row.state.done * 100) / row.state.total : 0;
    // The original's columns; raw gives the objects done and to do, not a percentage.
    text += raw
      ? `${i} ${row.node.id} ${row.node.vnodes} ${row.node.zone} ${row.state.done} ${row.state.total}\n`
      : `${String(i).padStart(4)}   ${row.node.id.padEnd(20)}${String(row.node.vnodes).padStart(5)}${String(row.node.zone).padStart(11)}${progress.toFixed(1).padStart(11)}%\n`;
  });
  return text;
}
