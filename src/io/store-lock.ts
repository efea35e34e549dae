// Who owns a store: the process holding an exclusive flock(2) on STORE/sheep.pid. Node has no
// flock call, so a short-lived `flock -n 3` child locks the descriptor we hand it as its fd 3. A
// flock belongs to the open file description, which our descriptor shares, so the lock stays ours
// after the child exits and the kernel drops it when our last descriptor closes: at any exit, a
// SIGKILL included (a zombie holds no descriptors). No native addon, no process that lives on.
// The pid written in the file only names the holder in a message; it never decides ownership.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SdError } from '../engine/errors.js';

export const storeLockName = 'sheep.pid';
/** flock(1)'s exit code when the lock is taken (-E), set apart from its own failures. */
const heldExitCode = 75;

export interface StoreLock {
  /** Clears the pid and closes the descriptor, which releases the lock. */
  release(): void;
}

export type LockOutcome = { locked: true; lock: StoreLock } | { locked: false; holderPid: number | undefined };

/**
 * Takes the store's lock without waiting. The file is never removed: a lock file unlinked while
 * another process has it open would let two processes each lock "the" file.
 */
export function lockStore(storeDir: string, pid: number = process.pid): LockOutcome {
  fs.mkdirSync(storeDir, { recursive: true });
  const file = path.join(storeDir, storeLockName);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  const result = spawnSync('flock', ['--nonblock', '--exclusive', '--conflict-exit-code', String(heldExitCode), '3'], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
    encoding: 'utf8',
  });
  if (result.status === 0) {
    writePid(fd, `${pid}\n`);
    return { locked: true, lock: { release: () => release(fd) } };
  }
  const holder = readPid(fd);
  fs.closeSync(fd);
  if (result.status === heldExitCode) return { locked: false, holderPid: holder };
  const why = result.error ? result.error.message : (result.stderr.trim().split('\n')[0] ?? `exit ${result.status}`);
  throw new SdError('IO', `cannot lock ${file}: flock: ${why}`);
}

/** Best effort: a full disk must not stop a sheep from starting, the pid is only informative. */
function writePid(fd: number, text: string): void {
  try {
    fs.ftruncateSync(fd, 0);
    if (text !== '') fs.writeSync(fd, text, 0);
  } catch {
    // ENOSPC, EROFS...: the lock is what counts.
  }
}

function readPid(fd: number): number | undefined {
  try {
    const buffer = Buffer.alloc(32);
    const text = buffer.toString('utf8', 0, fs.readSync(fd, buffer, 0, buffer.length, 0)).trim();
    return /^\d+$/.test(text) && Number(text) > 0 ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

function release(fd: number): void {
  writePid(fd, '');
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed: released either way.
  }
}
