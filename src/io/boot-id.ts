// Which boot of the machine this is: Linux makes a new random id at every boot. A store compares
// it with the one of its last start to tell a process crash (the OS cache kept every write) from
// a power loss or reboot (what was not synced may be gone): see src/store/dirty-set.ts.
import { readFileSync } from 'node:fs';

const bootIdFile = '/proc/sys/kernel/random/boot_id';

/** The boot id, or undefined where the system has none (then a lost cache is assumed). */
export function readBootId(): string | undefined {
  try {
    return readFileSync(bootIdFile, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
