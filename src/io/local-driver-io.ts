// What the `local` cluster driver needs of the operating system, behind one small port: its
// shared directory, the append-only event log in it, a watch on it, the members' heartbeat files,
// and whether a member's process still lives (/proc). The driver's logic (src/cluster/local.ts)
// is written against `LocalDriverIo`, so a test or the simulator can hand it another world.
import fs from 'node:fs';
import { SdError } from '../engine/errors.js';

/** The event log, opened for appending and for reading. */
export interface LocalLogFile {
  /** One write() of a whole line on the O_APPEND descriptor; returns the bytes written. */
  append(line: Buffer): number;
  /** Reads from `offsetBytes` into `buffer`; 0 at the end of the log. */
  read(buffer: Buffer, offsetBytes: number): number;
  sizeBytes(): number;
  close(): void;
}

export interface Watch {
  close(): void;
}

/** This process's heartbeat file, open for the life of the driver. */
export interface BeatFile {
  /** Overwrites the file's content in place (one pwrite at offset 0, no open, no allocation). */
  write(text: string): void;
  /** Closes it and, with `remove`, unlinks it. */
  close(remove: boolean): void;
}

/**
 * What a check of a process can tell: only `dead` is a definite answer that it is gone (no such
 * pid, a zombie, another process under a reused pid). `unknown` (EMFILE, ENFILE, EACCES...) says
 * nothing about it: a member must never be declared dead because this process ran out of files.
 */
export type ProcessLiveness = { state: 'alive' } | { state: 'dead' } | { state: 'unknown'; reason: string };

/** A heartbeat file's content; 'missing' when there is none (ENOENT); `unknown` when unreadable. */
export type BeatReading = { state: 'read'; text: string } | { state: 'missing' } | { state: 'unknown'; reason: string };

export interface LocalDriverIo {
  /** Creates DIR mode 0700 and refuses one that someone else could write to. */
  prepareDir(dir: string): void;
  openLog(file: string): LocalLogFile;
  /** Calls `onChange` when something in `dir` changes; throws when watching is unavailable. */
  watch(dir: string, onChange: () => void, onError: (error: Error) => void): Watch;
  /** This process: its pid and start token (null where /proc is missing). */
  self(): { pid: number; start: string | null };
  /** Is the process `pid` that started at `start` (null: any start) still alive? */
  liveness(pid: number, start: string | null): ProcessLiveness;
  /** Creates (or truncates) this incarnation's heartbeat file. */
  openBeat(file: string): BeatFile;
  readBeat(file: string): BeatReading;
  /** Removes a heartbeat file; one already gone is fine, any other failure is ignored too. */
  removeBeat(file: string): void;
}

/** Errors of a /proc read that mean the process is gone, not that we could not look. */
const goneCodes = new Set(['ENOENT', 'ESRCH']);

type StatReading = { state: 'read'; start: string; zombie: boolean } | { state: 'gone' } | { state: 'unknown'; reason: string };

/** Field 22 of /proc/PID/stat (start time) and whether the process is a zombie. */
function readStat(pid: number): StatReading {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return goneCodes.has(code) ? { state: 'gone' } : { state: 'unknown', reason: `reading /proc/${pid}/stat: ${code}` };
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[19];
  if (start === undefined) return { state: 'unknown', reason: `/proc/${pid}/stat has no start time` };
  return { state: 'read', start, zombie: fields[0] === 'Z' || fields[0] === 'X' };
}

/**
 * The start time of a process, or null when it is gone, a zombie, or cannot be read. Together
 * with the pid it names one process: a pid reused later has another start time.
 */
export function processStartToken(pid: number): string | null {
  const stat = readStat(pid);
  return stat.state === 'read' && !stat.zombie ? stat.start : null;
}

export function processLiveness(pid: number, start: string | null): ProcessLiveness {
  try {
    process.kill(pid, 0);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return { state: 'dead' };
    // EPERM: it exists but belongs to another user.
    if (code !== 'EPERM') return { state: 'unknown', reason: `kill(${pid}, 0): ${code ?? String(error)}` };
  }
  if (start === null) return { state: 'alive' };
  const stat = readStat(pid);
  if (stat.state === 'gone') return { state: 'dead' };
  if (stat.state === 'unknown') return stat;
  // Killed and not yet reaped, or another process under a reused pid: dead for us.
  return stat.zombie || stat.start !== start ? { state: 'dead' } : { state: 'alive' };
}

/** Alive unless definitely dead: what a caller that must not evict on doubt wants. */
export function isProcessAlive(pid: number, start: string | null): boolean {
  return processLiveness(pid, start).state !== 'dead';
}

function openBeat(file: string): BeatFile {
  const fd = fs.openSync(file, 'w', 0o600);
  return {
    write: (text) => void fs.writeSync(fd, text, 0),
    close(remove) {
      fs.closeSync(fd);
      if (remove) removeBeat(file);
    },
  };
}

function readBeat(file: string): BeatReading {
  try {
    return { state: 'read', text: fs.readFileSync(file, 'utf8') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return code === 'ENOENT' ? { state: 'missing' } : { state: 'unknown', reason: `reading ${file}: ${code}` };
  }
}

function removeBeat(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // Best effort: a stale beat file is only a few bytes, and names no member any more.
  }
}

function prepareDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.statSync(dir);
  if (!stat.isDirectory()) throw new SdError('INVALID_ARGUMENT', `${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && stat.uid !== uid) {
    throw new SdError('INVALID_ARGUMENT', `${dir} belongs to uid ${stat.uid}, not to us (uid ${uid})`);
  }
  if ((stat.mode & 0o022) !== 0) {
    throw new SdError('INVALID_ARGUMENT', `${dir} is writable by group or others (mode ${(stat.mode & 0o777).toString(8)})`);
  }
}

function openLog(file: string): LocalLogFile {
  const appendFd = fs.openSync(file, 'a', 0o600);
  const readFd = fs.openSync(file, 'r');
  return {
    append: (line) => fs.writeSync(appendFd, line),
    read: (buffer, offsetBytes) => fs.readSync(readFd, buffer, 0, buffer.length, offsetBytes),
    sizeBytes: () => fs.fstatSync(appendFd).size,
    close() {
      fs.closeSync(appendFd);
      fs.closeSync(readFd);
    },
  };
}

export const nodeLocalDriverIo: LocalDriverIo = {
  prepareDir,
  openLog,
  watch(dir, onChange, onError) {
    const watcher = fs.watch(dir, onChange);
    watcher.on('error', onError);
    return { close: () => watcher.close() };
  },
  self: () => ({ pid: process.pid, start: fs.existsSync('/proc/self/stat') ? processStartToken(process.pid) : null }),
  liveness: processLiveness,
  openBeat,
  readBeat,
  removeBeat,
};
