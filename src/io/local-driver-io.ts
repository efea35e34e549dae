// What the `local` cluster driver needs of the operating system, behind one small port: its
// shared directory, the append-only event log in it, a watch on it, and whether a member's
// process still lives (/proc). The driver's logic (src/cluster/local.ts) is written against
// `LocalDriverIo`, so a test or the simulator can hand it another world.
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

export interface LocalDriverIo {
  /** Creates DIR mode 0700 and refuses one that someone else could write to. */
  prepareDir(dir: string): void;
  openLog(file: string): LocalLogFile;
  /** Calls `onChange` when something in `dir` changes; throws when watching is unavailable. */
  watch(dir: string, onChange: () => void, onError: (error: Error) => void): Watch;
  /** This process: its pid and start token (null where /proc is missing). */
  self(): { pid: number; start: string | null };
  /** Is the process `pid` that started at `start` (null: any start) still alive? */
  isAlive(pid: number, start: string | null): boolean;
}

/**
 * The start time of a process (field 22 of /proc/PID/stat), or null when it is gone or a zombie.
 * Together with the pid it names one process: a pid reused later has another start time.
 */
export function processStartToken(pid: number): string | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  if (state === 'Z' || state === 'X') return null; // killed, not yet reaped: dead for us
  return fields[19] ?? null;
}

export function isProcessAlive(pid: number, start: string | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  if (start === null) return true;
  return processStartToken(pid) === start;
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
  isAlive: isProcessAlive,
};
