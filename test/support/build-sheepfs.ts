// Builds the sheepfs command over the in-memory backend into one ES module, so a test can run it
// as a process the way bin/sheepfs runs (the double stays out of src/ and dist/).
import { bundleTestEntry } from './bundle.js';

export function buildMemorySheepfs(): string {
  return bundleTestEntry('sheepfs-memory-main.ts', 'sheepfs-memory.mjs');
}
