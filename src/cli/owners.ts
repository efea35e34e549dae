// Owner-table questions dog asks from the client side, as the original did.
import type { VolumeIo } from '../volume/volume-io.js';

/** Whether the VDI owns any object itself: none means nothing was written since its parent. */
export async function hasOwnObjects(volume: VolumeIo): Promise<boolean> {
  const objects = Math.ceil(volume.info.sizeBytes / volume.info.objectSizeBytes);
  for (let index = 0; index < objects; index++) if ((await volume.owner(index)) === volume.info.vid) return true;
  return false;
}
