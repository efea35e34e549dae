// A volume opened under a writer's lock (engine/vdi-locks.ts): closing it frees the lock.
import type { Volume } from '../engine/volume.js';

/** `volume`, whose close() also runs `release` once (after the volume's own close). */
export function lockedVolume(volume: Volume, release: () => Promise<unknown>): Volume {
  let released: Promise<void> | undefined;
  return {
    get info() {
      return volume.info;
    },
    read: (offset, length) => volume.read(offset, length),
    write: (offset, data, durable) => volume.write(offset, data, durable),
    flush: () => volume.flush(),
    discard: (offset, length) => volume.discard(offset, length),
    writeZeroes: (offset, length) => volume.writeZeroes(offset, length),
    extents: (offset, length) => volume.extents(offset, length),
    close: () =>
      (released ??= (async () => {
        try {
          await volume.close();
        } finally {
          await release();
        }
      })()),
  };
}

/** `NAME/shared`: an export or mount spec asking for a shared lock ('/' is in no VDI name). */
export const sharedSuffix = '/shared';

export function splitShared(spec: string): { spec: string; shared: boolean } {
  return spec.endsWith(sharedSuffix) ? { spec: spec.slice(0, -sharedSuffix.length), shared: true } : { spec, shared: false };
}

/** `NAME/writethrough`: an export whose every write is durable before it is acknowledged. */
export const writethroughSuffix = '/writethrough';

/** The spec without its `/shared` and `/writethrough` suffixes (either order), and which it had. */
export function splitExportSuffixes(spec: string): { spec: string; shared: boolean; writethrough: boolean } {
  let rest = spec;
  let shared = false;
  let writethrough = false;
  for (;;) {
    if (!shared && rest.endsWith(sharedSuffix)) {
      shared = true;
      rest = rest.slice(0, -sharedSuffix.length);
    } else if (!writethrough && rest.endsWith(writethroughSuffix)) {
      writethrough = true;
      rest = rest.slice(0, -writethroughSuffix.length);
    } else return { spec: rest, shared, writethrough };
  }
}
