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
  stagedOid,
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
  /** Moves the staged strip of `generation` over the strip, on its node. */
  commitStrip(strip: Oid, generation: bigint): Promise<void>;
}

/** Objects a gateway remembers as cleanly written (a few hundred KiB). */
const ecCleanObjectsMax = 4096;

/** A strip read: its header and bytes, or why it could not be had. */
export type StripRead = { generation: bigint; bytes: Buffer } | { error: SdError };

export class EcGateway {
  /** One write at a time per object: a partial write reads, patches and rewrites the stripe. */
  private readonly writing = new Map<Oid, Promise<void>>();
  private lastGeneration = 0n;
  /**
   * Objects whose last write through this gateway committed every strip, with the epoch: their
   * committed strips agree until another gateway writes them, which takes the VDI's lock, or a
   * writer dies mid-commit, which is a new epoch. Bounded; a full map starts over.
   */
  private readonly clean = new Map<Oid, number>();

  constructor(
    private readonly strips: StripIo,
    private readonly placement: Placement,
    private readonly group: Pick<Group, 'config' | 'ring' | 'epoch'>,
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

  /**
   * The stripe's newest generation that D strips carry, committed or staged, with those strips
   * (undefined where missing) and each committed strip's own generation; NO_OBJECT for a hole.
   */
  async decodableStripe(oid: Oid, policy: EcPolicy, share: number): Promise<Stripe> {
    const [committed, staged] = await Promise.all([this.readStrips(oid, policy, share, false), this.readStrips(oid, policy, share, true)]);
    return chooseStripe(oid, policy, committed, staged);
  }

  /** Every strip of the object (or every staged one), whole, each with its generation or why it could not be read. */
  readStrips(oid: Oid, policy: EcPolicy, share: number, staged: boolean): Promise<StripRead[]> {
    return Promise.all(Array.from({ length: policy.data + policy.parity }, (_, i) => this.readStrip(oid, i, stripHeaderBytes, share, staged)));
  }

  /** Bytes of strip `index` (after its header) with the header's generation. */
  private async readStrip(oid: Oid, index: number, offsetBytes: number, lengthBytes: number, staged = false): Promise<StripRead> {
    const strip = staged ? stagedOid(stripOid(oid, index)) : stripOid(oid, index);
    try {
      // The header is its own 4 KiB block: read with the range only when they touch.
      const [head, bytes] =
        lengthBytes === 0
          ? [await this.strips.read(strip, 0, 16), Buffer.alloc(0)]
          : offsetBytes === stripHeaderBytes
          ? await this.strips.read(strip, 0, stripHeaderBytes + lengthBytes).then((b) => [b, b.subarray(stripHeaderBytes)] as const)
          : await Promise.all([this.strips.read(strip, 0, 16), this.strips.read(strip, offsetBytes, lengthBytes)]);
      const header = decodeStripHeader(head);
      if (!header || header.index !== index) return { error: new SdError('CORRUPT', `strip ${oidHex(strip)} has no valid header`) };
      return { generation: header.generation, bytes };
    } catch (error) {
      return { error: asSdError(error) };
    }
  }

  write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean): Promise<void> {
    return this.serialized(oid, () => this.writeStripe(oid, offsetBytes, data, create));
  }

  private async serialized(oid: Oid, work: () => Promise<void>): Promise<void> {
    const before = this.writing.get(oid) ?? Promise.resolve();
    const mine = before.then(work);
    const settled = mine.catch(() => undefined);
    this.writing.set(oid, settled);
    try {
      await mine;
    } finally {
      if (this.writing.get(oid) === settled) this.writing.delete(oid);
    }
  }

  /**
   * A whole-stripe write in two steps: every strip is first staged (its own file on the strip's
   * node), and only once all are staged is each committed over its strip. A crash at any point
   * leaves D strips of one generation: the old one in the committed strips while staging, the
   * new one across committed and staged strips while committing (docs/erasure-coding.md).
   */
  private async writeStripe(oid: Oid, offsetBytes: number, data: Buffer, create: boolean): Promise<void> {
    const policy = this.placement.ecPolicy(oid)!;
    this.checkStrict(policy);
    const sizeBytes = this.placement.objectSizeBytes(oid);
    const share = stripDataBytes(sizeBytes, policy);
    const partial = offsetBytes !== 0 || data.length !== sizeBytes;
    // Healthy: the D data strips of one generation are the object, and that generation stays
    // decodable from them alone while the new one is staged.
    const committed = partial ? await this.committedData(oid, policy, share) : undefined;
    const epoch = this.group.epoch;
    const settled = committed !== undefined || (!partial && (this.clean.get(oid) === epoch || (await this.committedAgree(oid, policy))));
    this.clean.delete(oid);
    const current = settled ? undefined : await this.currentStripe(oid, policy, share, partial, create);
    let object = data;
    if (partial) {
      object = committed?.object ?? Buffer.alloc(sizeBytes);
      if (current) {
        const full = await reconstruct(policy, current.strips, Array.from({ length: policy.data }, (_, i) => i));
        full.slice(0, policy.data).forEach((strip, i) => strip.copy(object, i * share));
      }
      data.copy(object, offsetBytes);
    }
    // A write cut off while committing left the committed strips mixed: finish it first, so
    // that staging over its staged strips never takes away the only copies of its generation.
    if (current && current.committed.some((g) => g !== current.generation)) await this.rollForward(oid, policy, current);
    const dataStrips = Array.from({ length: policy.data }, (_, i) => object.subarray(i * share, (i + 1) * share));
    const parity = await encodeParity(policy, dataStrips);
    const generation = this.nextGeneration(current?.generation ?? committed?.generation ?? 0n);
    const strips = [...dataStrips, ...parity].map((bytes, index) =>
      Buffer.concat([encodeStripHeader({ index, data: policy.data, parity: policy.parity, generation }), bytes]),
    );
    await Promise.all(strips.map((bytes, index) => this.strips.write(stagedOid(stripOid(oid, index)), 0, bytes, true)));
    // A commit that fails (the node left, the staged copy is gone) is done by writing the strip itself.
    await Promise.all(
      strips.map((bytes, index) => {
        const strip = stripOid(oid, index);
        return this.strips.commitStrip(strip, generation).catch(() => this.strips.write(strip, 0, bytes, true));
      }),
    );
    if (this.clean.size >= ecCleanObjectsMax) this.clean.clear();
    this.clean.set(oid, epoch);
  }

  /** The object from its D committed data strips when they all answer with one generation. */
  private async committedData(oid: Oid, policy: EcPolicy, share: number): Promise<{ object: Buffer; generation: bigint } | undefined> {
    const reads = await Promise.all(Array.from({ length: policy.data }, (_, i) => this.readStrip(oid, i, stripHeaderBytes, share)));
    const found = reads.flatMap((r) => ('generation' in r ? [r] : []));
    if (found.length !== policy.data || found.some((r) => r.generation !== found[0]!.generation)) return undefined;
    return { object: Buffer.concat(found.map((r) => r.bytes)), generation: found[0]!.generation };
  }

  /** Rolls the stripe forward if a write cut off while committing left it mixed (ec-recovery.ts). */
  async settle(oid: Oid): Promise<void> {
    const policy = this.placement.ecPolicy(oid)!;
    const share = stripDataBytes(this.placement.objectSizeBytes(oid), policy);
    await this.serialized(oid, async () => {
      if (await this.committedAgree(oid, policy)) return;
      const stripe = await this.currentStripe(oid, policy, share, false, true);
      if (stripe) await this.rollForward(oid, policy, stripe);
    });
  }

  /** Whether the committed strips that answer all carry one generation, D of them at least (or there are none). */
  private async committedAgree(oid: Oid, policy: EcPolicy): Promise<boolean> {
    const heads = await Promise.all(Array.from({ length: policy.data + policy.parity }, (_, i) => this.readStrip(oid, i, stripHeaderBytes, 0)));
    const generations = heads.flatMap((h) => ('generation' in h ? [h.generation] : []));
    if (generations.length === 0) return heads.every((h) => 'error' in h && h.error.code === 'NO_OBJECT');
    return generations.length >= policy.data && generations.every((g) => g === generations[0]);
  }

  /** The stripe as it stands; undefined when there is none to keep. */
  private async currentStripe(oid: Oid, policy: EcPolicy, share: number, partial: boolean, create: boolean): Promise<Stripe | undefined> {
    try {
      return await this.decodableStripe(oid, policy, share);
    } catch (error) {
      // A whole write replaces even what no generation decodes; a partial one patches only a
      // stripe that decodes, or a hole it may create.
      if (partial && !(create && asSdError(error).code === 'NO_OBJECT')) throw error;
      return undefined;
    }
  }

  /** Every committed strip of another generation rewritten with the stripe's decodable one. */
  private async rollForward(oid: Oid, policy: EcPolicy, stripe: Stripe): Promise<void> {
    const count = policy.data + policy.parity;
    const full = await reconstruct(policy, stripe.strips, Array.from({ length: count }, (_, i) => i));
    await Promise.all(
      full.map((bytes, index) => {
        if (stripe.committed[index] === stripe.generation) return undefined;
        const header = encodeStripHeader({ index, data: policy.data, parity: policy.parity, generation: stripe.generation });
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

export interface Stripe {
  generation: bigint;
  /** The strips of `generation`, committed or staged; undefined where none is. */
  strips: Array<Buffer | undefined>;
  /** Each committed strip's generation, undefined where it could not be read. */
  committed: Array<bigint | undefined>;
}

/** The newest generation at least D strips carry, committed or staged; NO_OBJECT for a hole. */
export function chooseStripe(oid: Oid, policy: EcPolicy, committed: readonly StripRead[], staged: readonly StripRead[] = []): Stripe {
  const reads = [...committed.map((r, i) => [i, r] as const), ...staged.map((r, i) => [i, r] as const)];
  const found = reads.flatMap(([i, r]) => ('generation' in r ? [[i, r.generation] as const] : []));
  const chosen = decodableGeneration(found, policy.data);
  const committedGenerations = committed.map((r) => ('generation' in r ? r.generation : undefined));
  if (chosen) {
    const strips: Array<Buffer | undefined> = committed.map(() => undefined);
    for (const [i, r] of reads) if ('generation' in r && r.generation === chosen.generation) strips[i] ??= r.bytes;
    return { generation: chosen.generation, strips, committed: committedGenerations };
  }
  const errors = committed.flatMap((r) => ('error' in r ? [r.error] : []));
  // A hole only when every strip said so: one we could not reach may hold data. Staged strips
  // of no decodable generation are a first write cut off: still a hole.
  const anyCommitted = committed.some((r) => 'generation' in r);
  if (!anyCommitted && errors.every((e) => e.code === 'NO_OBJECT')) throw new SdError('NO_OBJECT', `no object ${oidHex(oid)}`);
  const other = errors.find((e) => e.code !== 'NO_OBJECT');
  const readable = committed.filter((r) => 'generation' in r).length;
  throw new SdError('IO', `object ${oidHex(oid)}: ${readable} of ${committed.length} strips readable, ${policy.data} of one generation needed${other ? ` (${other.message})` : ''}`);
}
