// How many descriptors this process may open (RLIMIT_NOFILE, soft). Node raises the soft limit
// to the hard one at start (node.cc), so what /proc reports here is what we have.
import * as fs from 'node:fs';

/** The soft open-files limit, or undefined where /proc/self/limits cannot tell (not Linux). */
export function openFilesLimit(): number | undefined {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === 'unlimited') return Number.MAX_SAFE_INTEGER;
    return soft !== undefined && /^\d+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}
