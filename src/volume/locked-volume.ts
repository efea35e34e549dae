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
    write: (offset, data) => volume.write(offset, data),
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
