// The byte-addressed view of one VDI that every front end (NBD, sheepfs, dog read/write) uses.
// The implementation over the cluster lives in src/volume/volume-io.ts; tests use an in-memory one.

/** A run of bytes that is either backed by objects or a hole that reads as zeros. */
export interface Extent {
  offsetBytes: number;
  lengthBytes: number;
  allocated: boolean;
}

export interface VolumeInfo {
  name: string;
  /** '' for the working VDI. */
  tag: string;
  snapId: number;
  vid: number;
  sizeBytes: number;
  objectSizeBytes: number;
  readOnly: boolean;
}

/**
 * Errors are SdError (src/engine/errors.ts): OUT_OF_RANGE past the end, READ_ONLY on a snapshot,
 * NETWORK/IO when the cluster fails. Offsets and lengths are non-negative safe integers.
 */
export interface Volume {
  readonly info: VolumeInfo;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /**
   * Resolves once every replica has the data: in its OS cache for a writeback volume, on its disk
   * for a writethrough one or when `durable` (FUA) is asked (docs/durability.md).
   */
  write(offsetBytes: number, data: Buffer, durable?: boolean): Promise<void>;
  /** Every write acknowledged before it is then on every replica's disk. */
  flush(): Promise<void>;
  /** Whole objects in the range become unallocated again (thin); partial ranges are zeroed. */
  discard(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Reads as zeros afterwards; whole objects are deallocated like discard. */
  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Allocation of the range, as consecutive extents covering it exactly. */
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]>;
  close(): Promise<void>;
}

/** Opens volumes by export spec: `NAME`, `NAME:TAG` or `NAME:SNAPID` (snapshots are read-only). */
export interface VolumeProvider {
  /**
   * `opener.client` names who opens (an NBD client's address) for the writer's lock a working
   * VDI takes (engine/vdi-locks.ts); `SPEC/shared` opens it shared. No opener: no lock.
   */
  open(spec: string, opener?: { client: string }): Promise<Volume>;
  /** Names of working VDIs, for NBD_OPT_LIST. */
  listNames(): Promise<string[]>;
}
