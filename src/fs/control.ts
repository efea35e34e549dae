// Parsing what a user writes into vdi/mount, vdi/unmount, vdi/snapshot, vdi/rollback,
// vdi/delete and vdi/clone. Pure: bytes in, a list of requests or an INVALID_ARGUMENT SdError out.
// Anything a user can write is either a well-formed request or a refusal; nothing here throws.
//
// One request per line, and the line is the name, as the original sheepfs read it: a name may
// hold spaces. A name never holds ':' and a tag never holds whitespace, so `NAME:TAG` names a
// snapshot and, in vdi/clone, `SRC:TAG DST` is unambiguous.
import { sdError, type Result } from '../engine/errors.js';
import { snapshotTagBytesMax, vdiNameBytesMax } from '../engine/limits.js';
import type { ControlCommand } from './tree.js';

export type ControlRequest =
  | { command: 'mount'; spec: string }
  | { command: 'unmount'; spec: string }
  | { command: 'snapshot'; name: string; tag: string | undefined }
  | { command: 'rollback'; name: string; tag: string }
  | { command: 'delete'; name: string; tag: string | undefined }
  | { command: 'clone'; source: string; tag: string; target: string };

/** One line of a control file, newline excluded. */
export const controlLineBytesMax = 1024;
/** Lines in one write(2); `printf 'a\nb\n' > vdi/mount` is two commands run in order. */
export const controlLinesPerWriteMax = 16;
export const controlWriteBytesMax = controlLinesPerWriteMax * (controlLineBytesMax + 1);

/** Names: no control characters, '/' (not a file name) or ':' (it separates the tag). */
const namePattern = /^[^/:\x00-\x1f\x7f]+$/u;
/** Tags (and snapshot ids): no whitespace either. */
const tagPattern = /^[^\s/:\x00-\x1f\x7f]+$/u;

type Parsed<T> = Result<T>;

function invalid<T>(message: string): Parsed<T> {
  return { ok: false, error: sdError('INVALID_ARGUMENT', message) };
}

function checkWord(word: string, what: 'name' | 'tag'): string | undefined {
  if (!(what === 'name' ? namePattern : tagPattern).test(word)) return `bad character in ${what} '${word}'`;
  const bytesMax = what === 'name' ? vdiNameBytesMax : snapshotTagBytesMax;
  if (Buffer.byteLength(word) > bytesMax) return `${what} longer than ${bytesMax} bytes`;
  return undefined;
}

/** `NAME` or `NAME:TAG` (TAG may be a snapshot id): the forms Backend.openVolume accepts. */
function parseNameAndTag(line: string, tagRequired: boolean): Parsed<[string, string | undefined]> {
  const parts = line.split(':');
  if (parts.length > 2) return invalid(`too many ':' in '${line}'`);
  const [name = '', tag] = parts;
  if (tagRequired && tag === undefined) return invalid('expected NAME:TAG');
  const problem = checkWord(name, 'name') ?? (tag === undefined ? undefined : checkWord(tag, 'tag'));
  return problem === undefined ? { ok: true, value: [name, tag] } : invalid(problem);
}

/** `SRC:TAG DST`: the snapshot to clone and the new VDI's name (which may hold spaces). */
function parseClone(line: string): Parsed<ControlRequest> {
  const match = /^([^:]*):(\S*)\s+(.*)$/u.exec(line);
  if (match === null) return invalid('expected SRC:TAG DST');
  const [, source = '', tag = '', target = ''] = match;
  const problem = checkWord(source, 'name') ?? checkWord(tag, 'tag') ?? checkWord(target, 'name');
  return problem === undefined ? { ok: true, value: { command: 'clone', source, tag, target } } : invalid(problem);
}

/** Table of line parsers, one per control file; each gets the line with its ends trimmed. */
const lineParsers: Record<ControlCommand, (line: string) => Parsed<ControlRequest>> = {
  mount: (line) => parseSpecCommand('mount', line),
  unmount: (line) => parseSpecCommand('unmount', line),
  snapshot: (line) => {
    const parsed = parseNameAndTag(line, false);
    return parsed.ok ? { ok: true, value: { command: 'snapshot', name: parsed.value[0], tag: parsed.value[1] } } : parsed;
  },
  rollback: (line) => {
    const parsed = parseNameAndTag(line, true);
    if (!parsed.ok) return parsed;
    const [name, tag = ''] = parsed.value;
    return { ok: true, value: { command: 'rollback', name, tag } };
  },
  delete: (line) => {
    const parsed = parseNameAndTag(line, false);
    return parsed.ok ? { ok: true, value: { command: 'delete', name: parsed.value[0], tag: parsed.value[1] } } : parsed;
  },
  clone: parseClone,
};

function parseSpecCommand(command: 'mount' | 'unmount', line: string): Parsed<ControlRequest> {
  const spec = parseNameAndTag(line, false);
  return spec.ok ? { ok: true, value: { command, spec: line } } : spec;
}

export function parseControlLine(command: ControlCommand, line: string): Parsed<ControlRequest> {
  if (Buffer.byteLength(line) > controlLineBytesMax)
    return invalid(`line longer than ${controlLineBytesMax} bytes`);
  // Spaces and tabs around the line are not part of a name (`echo "Alice "` means Alice).
  const trimmed = line.replace(/^[ \t]+|[ \t]+$/gu, '');
  if (trimmed.length === 0) return invalid('empty line');
  return lineParsers[command](trimmed);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(data: Uint8Array): string | undefined {
  try {
    return utf8.decode(data);
  } catch {
    return undefined;
  }
}

/**
 * One write(2) into a control file: one or more lines, the last newline optional (`echo -n`).
 * All lines are checked before any runs, so a typo on line 2 does not half-apply line 1.
 */
export function parseControlWrite(
  command: ControlCommand,
  data: Uint8Array,
): Parsed<ControlRequest[]> {
  if (data.length > controlWriteBytesMax)
    return invalid(`write longer than ${controlWriteBytesMax} bytes`);
  const text = decodeUtf8(data);
  if (text === undefined) return invalid('not UTF-8 text');
  const lines = text.split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length > controlLinesPerWriteMax)
    return invalid(`more than ${controlLinesPerWriteMax} lines`);
  const requests: ControlRequest[] = [];
  for (const line of lines) {
    const parsed = parseControlLine(command, line.endsWith('\r') ? line.slice(0, -1) : line);
    if (!parsed.ok) return parsed;
    requests.push(parsed.value);
  }
  return { ok: true, value: requests };
}
