// Parsing what a user writes into vdi/mount, vdi/unmount, vdi/snapshot, vdi/rollback and
// vdi/delete. Pure: bytes in, a list of requests or an INVALID_ARGUMENT SdError out. Anything
// a user can write is either a well-formed request or a refusal; nothing here throws.
import { sdError, type Result } from '../engine/errors.js';
import { snapshotTagBytesMax, vdiNameBytesMax } from '../engine/limits.js';
import type { ControlCommand } from './tree.js';

export type ControlRequest =
  | { command: 'mount'; spec: string }
  | { command: 'unmount'; spec: string }
  | { command: 'snapshot'; name: string; tag: string | undefined }
  | { command: 'rollback'; name: string; tag: string }
  | { command: 'delete'; name: string; tag: string | undefined };

/** One line of a control file, newline excluded. */
export const controlLineBytesMax = 1024;
/** Lines in one write(2); `printf 'a\nb\n' > vdi/mount` is two commands run in order. */
export const controlLinesPerWriteMax = 16;
export const controlWriteBytesMax = controlLinesPerWriteMax * (controlLineBytesMax + 1);

/** Whitespace separates words; control characters, '/' (not a file name) and ':' never appear. */
const wordPattern = /^[^\s/:\x00-\x1f\x7f]+$/u;

type Parsed<T> = Result<T>;

function invalid<T>(message: string): Parsed<T> {
  return { ok: false, error: sdError('INVALID_ARGUMENT', message) };
}

function checkWord(word: string, what: 'name' | 'tag'): string | undefined {
  if (!wordPattern.test(word)) return `bad character in ${what} '${word}'`;
  const bytesMax = what === 'name' ? vdiNameBytesMax : snapshotTagBytesMax;
  if (Buffer.byteLength(word) > bytesMax) return `${what} longer than ${bytesMax} bytes`;
  return undefined;
}

/** `NAME`, `NAME:TAG` or `NAME:SNAPID`: the forms Backend.openVolume accepts. */
function parseSpec(word: string): Parsed<string> {
  const parts = word.split(':');
  if (parts.length > 2) return invalid(`too many ':' in '${word}'`);
  const [name = '', tag] = parts;
  const problem =
    checkWord(name, 'name') ?? (tag === undefined ? undefined : checkWord(tag, 'tag'));
  return problem === undefined ? { ok: true, value: word } : invalid(problem);
}

function parseNameAndTag(
  words: readonly string[],
  tagRequired: boolean,
): Parsed<[string, string | undefined]> {
  const wordsMin = tagRequired ? 2 : 1;
  if (words.length < wordsMin || words.length > 2) {
    return invalid(tagRequired ? 'expected NAME TAG' : 'expected NAME or NAME TAG');
  }
  const [name = '', tag] = words;
  const problem =
    checkWord(name, 'name') ?? (tag === undefined ? undefined : checkWord(tag, 'tag'));
  return problem === undefined ? { ok: true, value: [name, tag] } : invalid(problem);
}

/** Table of line parsers, one per control file. */
const lineParsers: Record<ControlCommand, (words: readonly string[]) => Parsed<ControlRequest>> = {
  mount: (words) => parseSpecCommand('mount', words),
  unmount: (words) => parseSpecCommand('unmount', words),
  snapshot: (words) => {
    const parsed = parseNameAndTag(words, false);
    return parsed.ok
      ? { ok: true, value: { command: 'snapshot', name: parsed.value[0], tag: parsed.value[1] } }
      : parsed;
  },
  rollback: (words) => {
    const parsed = parseNameAndTag(words, true);
    if (!parsed.ok) return parsed;
    const [name, tag = ''] = parsed.value;
    return { ok: true, value: { command: 'rollback', name, tag } };
  },
  delete: (words) => {
    const parsed = parseNameAndTag(words, false);
    return parsed.ok
      ? { ok: true, value: { command: 'delete', name: parsed.value[0], tag: parsed.value[1] } }
      : parsed;
  },
};

function parseSpecCommand(
  command: 'mount' | 'unmount',
  words: readonly string[],
): Parsed<ControlRequest> {
  if (words.length !== 1) return invalid('expected one NAME, NAME:TAG or NAME:SNAPID');
  const spec = parseSpec(words[0] ?? '');
  return spec.ok ? { ok: true, value: { command, spec: spec.value } } : spec;
}

export function parseControlLine(command: ControlCommand, line: string): Parsed<ControlRequest> {
  if (Buffer.byteLength(line) > controlLineBytesMax)
    return invalid(`line longer than ${controlLineBytesMax} bytes`);
  const words = line
    .trim()
    .split(/[ \t]+/u)
    .filter((word) => word.length > 0);
  if (words.length === 0) return invalid('empty line');
  return lineParsers[command](words);
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
