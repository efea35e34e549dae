// Object I/O of an erasure-coded VDI: an object is D data strips and P parity strips, each its own
// object with one copy (placement.ts puts strip i on node i of the object's D+P placement), read
// and written through the ordinary replica path (gateway.ts) and decoded here. Every write is a
// whole-stripe write with a new generation in every strip's header; a read decodes only strips of
// one generation that at least D strips carry (docs/erasure-coding.md).
import {
  decodableGeneration,
  decodeStripHeader,
  encodeStripHeader,
  stripDataBytes,
  stripHeaderBytes,
  stripOid,
  stripRanges,
  type EcPolicy,
} from '../engine/ec-layout.js';
import { SdError, asSdError } from '../engine/errors.js';
import { oidHex, type Oid } from '../engine/oid.js';
import type { Clock } from '../io/clock.js';
import { encodeParity, reconstruct } from '../io/reed-solomon.js';
import type { Group } from './group.js';
import type { Placement } from './placement.js';

/** What the EC layer needs of the replica path, for strip objects. */
export interface StripIo {
  read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean): Promise<void>;
}

/** A strip read: its header and bytes, or why it could not be had. */
export type StripRead = { generation: bigint; bytes: Buffer } | { error: SdError };

export class EcGateway {
  /** One write at a time per object: a partial write reads, patches and rewrites the stripe. */
  private readonly writing = new Map<Oid, Promise<void>>();
  private lastGeneration = 0n;

  constructor(
    private readonly strips: StripIo,
    private readonly placement: Placement,
    private readonly group: Pick<Group, 'config' | 'ring'>,
    private readonly clock: Clock,
  ) {}

  async read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const policy = this.placement.ecPolicy(oid)!;
    const share = stripDataBytes(this.placement.objectSizeBytes(oid), policy);
    const ranges = stripRanges(offsetBytes, lengthBytes, share);
    // Healthy: only the data strips the range touches, no decoding.
    const direct = await Promise.all(ranges.map((r) => this.readStrip(oid, r.index, stripHeaderBytes + r.offsetBytes, r.lengthBytes)));
    const generations = new Set(direct.map((d) => ('generation' in d ? d.generation : undefined)));
    if (!generations.has(undefined) && generations.size === 1) {
      return Buffer.concat(direct.map((d) => (d as { bytes: Buffer }).bytes));
    }
    const whole = await this.readStripe(oid, policy, share);
    return whole.subarray(offsetBytes, offsetBytes + lengthBytes);
  }

  /** The whole object, decoded from any D strips of its newest complete generation. */
  private async readStripe(oid: Oid, policy: EcPolicy, share: number): Promise<Buffer> {
    const { strips } = await this.decodableStripe(oid, policy, share);
    const full = await reconstruct(policy, strips, Array.from({ length: policy.data }, (_, i) => i));
    return Buffer.concat(full.slice(0, policy.data));
  }

  /** Every strip of the newest generation that D strips carry (undefined where missing); NO_OBJECT for a hole. */
  async decodableStripe(oid: Oid, policy: EcPolicy, share: number): Promise<{ generation: bigint; strips: Array<Buffer | undefined> }> {
    return chooseStripe(oid, policy, await this.readStrips(oid, policy, share));
  }

  /** Every strip of the object, whole, each with its generation or why it could not be read. */
  readStrips(oid: Oid, policy: EcPolicy, share: number): Promise<StripRead[]> {
    return Promise.all(Array.from({ length: policy.data + policy.parity }, (_, i) => this.readStrip(oid, i, stripHeaderBytes, share)));
  }

  /** Bytes of strip `index` (after its header) with the header's generation. */
  private async readStrip(oid: Oid, index: number, offsetBytes: number, lengthBytes: number): Promise<StripRead> {
    const strip = stripOid(oid, index);
    try {
      // The header is its own 4 KiB block: read with the range only when they touch.
      const [head, bytes] =
        offsetBytes === stripHeaderBytes
          ? await this.strips.read(strip, 0, stripHeaderBytes + lengthBytes).then((b) => [b, b.subarray(stripHeaderBytes)] as const)
          : await Promise.all([this.strips.read(strip, 0, 16), this.strips.read(strip, offsetBytes, lengthBytes)]);
      const header = decodeStripHeader(head);
      if (!header || header.index !== index) return { error: new SdError('CORRUPT', `strip ${oidHex(strip)} has no valid header`) };
      return { generation: header.generation, bytes };
    } catch (error) {
      return { error: asSdError(error) };
    }
  }

  async write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean): Promise<void> {
    const before = this.writing.get(oid) ?? Promise.resolve();
    const mine = before.then(() => this.writeStripe(oid, offsetBytes, data, create));
    const settled = mine.catch(() => undefined);
    this.writing.set(oid, settled);
    try {
      await mine;
    } finally {
      if (this.writing.get(oid) === settled) this.writing.delete(oid);
    }
  }

  private async writeStripe(oid: Oid, offsetBytes: number, data: Buffer, create: boolean): Promise<void> {
    const policy = this.placement.ecPolicy(oid)!;
    this.checkStrict(policy);
    const sizeBytes = this.placement.objectSizeBytes(oid);
    const share = stripDataBytes(sizeBytes, policy);
    let object = data;
    let known = 0n;
    if (offsetBytes !== 0 || data.length !== sizeBytes) {
      object = Buffer.alloc(sizeBytes);
      try {
        const current = await this.decodableStripe(oid, policy, share);
        known = current.generation;
        const full = await reconstruct(policy, current.strips, Array.from({ length: policy.data }, (_, i) => i));
        full.slice(0, policy.data).forEach((strip, i) => strip.copy(object, i * share));
      } catch (error) {
        if (!create || asSdError(error).code !== 'NO_OBJECT') throw error;
      }
      data.copy(object, offsetBytes);
    }
    const dataStrips = Array.from({ length: policy.data }, (_, i) => object.subarray(i * share, (i + 1) * share));
    const parity = await encodeParity(policy, dataStrips);
    const generation = this.nextGeneration(known);
    await Promise.all(
      [...dataStrips, ...parity].map((bytes, index) => {
        const header = encodeStripHeader({ index, data: policy.data, parity: policy.parity, generation });
        return this.strips.write(stripOid(oid, index), 0, Buffer.concat([header, bytes]), true);
      }),
    );
  }

  /**
   * Newer than any generation this object had: the clock's milliseconds with 12 bits of counter
   * below, and past what a partial write read. Writers of one VDI take its lock in turn, so two
   * gateways never race on an object; across hosts this trusts clocks to within the lock's hand-over.
   */
  private nextGeneration(known: bigint): bigint {
    let generation = BigInt(Math.floor(this.clock.nowMs())) << 12n;
    if (generation <= this.lastGeneration) generation = this.lastGeneration + 1n;
    if (generation <= known) generation = known + 1n;
    this.lastGeneration = generation;
    return generation;
  }

  /** `format -t`: with fewer zones than strips a write halts instead of doubling strips up on nodes. */
  private checkStrict(policy: EcPolicy): void {
    if (this.group.config?.strict && this.group.ring().zoneCount < policy.data + policy.parity) {
      throw new SdError('HALT', 'IO has halted as there are not enough living nodes');
    }
  }
}

/** The newest generation at least D strips carry, its strips (undefined elsewhere); NO_OBJECT for a hole. */
export function chooseStripe(oid: Oid, policy: EcPolicy, reads: readonly StripRead[]): { generation: bigint; strips: Array<Buffer | undefined> } {
  const found = new Map<number, bigint>();
  reads.forEach((r, i) => 'generation' in r && found.set(i, r.generation));
  const chosen = decodableGeneration(found, policy.data);
  if (chosen) {
    const strips = reads.map((r, i) => (chosen.strips.includes(i) && 'bytes' in r ? r.bytes : undefined));
    return { generation: chosen.generation, strips };
  }
  const errors = reads.flatMap((r) => ('error' in r ? [r.error] : []));
  // A hole only when every strip said so: one we could not reach may hold data.
  if (found.size === 0 && errors.every((e) => e.code === 'NO_OBJECT')) throw new SdError('NO_OBJECT', `no object ${oidHex(oid)}`);
  const other = errors.find((e) => e.code !== 'NO_OBJECT');
  throw new SdError('IO', `object ${oidHex(oid)}: ${found.size} of ${reads.length} strips readable, ${policy.data} of one generation needed${other ? ` (${other.message})` : ''}`);
}
