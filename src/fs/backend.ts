// What sheepfs needs from the cluster. The real implementation (src/fs/cluster-backend.ts) talks
// rpc to one sheep and formats text with the same functions `dog` uses; tests use an in-memory one.
import type { Volume } from '../engine/volume.js';

export interface SheepfsBackend {
  /** Exactly what `dog cluster info` prints (fresh on every call). */
  clusterInfoText(): Promise<string>;
  /** Exactly what `dog node list` prints. */
  nodeListText(): Promise<string>;
  /** Exactly what `dog node info` prints. */
  nodeInfoText(): Promise<string>;
  /** Exactly what `dog vdi list` prints. */
  vdiListText(): Promise<string>;
  /** Like `dog vdi snapshot [-s TAG] NAME`. */
  snapshot(name: string, tag: string | undefined): Promise<void>;
  /** Like `dog vdi rollback -s TAG NAME` (no question asked). */
  rollback(name: string, tag: string): Promise<void>;
  /** Like `dog vdi delete [-s TAG] NAME`. */
  deleteVdi(name: string, tag: string | undefined): Promise<void>;
  /** Like `dog vdi clone -s TAG SOURCE TARGET`: a new writable VDI from a snapshot. */
  clone(source: string, tag: string, target: string): Promise<void>;
  /** `NAME` (writable) or `NAME:TAG` / `NAME:SNAPID` (read-only). Throws SdError NO_VDI/NO_TAG. */
  openVolume(spec: string): Promise<Volume>;
  /** Answers or throws SdError NETWORK: used at start-up to fail fast when no sheep answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
