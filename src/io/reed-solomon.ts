// The Reed-Solomon codec: @ronomon/reed-solomon, a native addon (Cauchy matrices, SIMD where the
// CPU has it) that runs in libuv's thread pool, so a 4 MiB stripe never blocks the event loop.
// Chosen over a WebAssembly build of a Rust codec for that: no copy into a wasm heap, and
// threads (docs/erasure-coding.md). Only the calling convention is ours; no field arithmetic.
import { createRequire } from 'node:module';
import type { EcPolicy } from '../engine/ec-layout.js';

interface Addon {
  MAX_K: number;
  MAX_M: number;
  create(k: number, m: number): unknown;
  encode(
    context: unknown,
    sources: number,
    targets: number,
    buffer: Buffer,
    bufferOffset: number,
    bufferSize: number,
    parity: Buffer,
    parityOffset: number,
    paritySize: number,
    callback: (error: Error | undefined) => void,
  ): void;
}

const addon = createRequire(import.meta.url)('@ronomon/reed-solomon') as Addon;
const contexts = new Map<string, unknown>();

/** The codec's own limits: 24 data and 6 parity strips (the original allowed 15 parity strips). */
export const codecDataStripsMax = addon.MAX_K;
export const codecParityStripsMax = addon.MAX_M;

function context(policy: EcPolicy): unknown {
  const key = `${policy.data}:${policy.parity}`;
  let found = contexts.get(key);
  if (found === undefined) contexts.set(key, (found = addon.create(policy.data, policy.parity)));
  return found;
}

function bits(indexes: readonly number[]): number {
  return indexes.reduce((mask, index) => mask | (1 << index), 0);
}

function run(policy: EcPolicy, sources: number[], targets: number[], data: Buffer, parity: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    addon.encode(context(policy), bits(sources), bits(targets), data, 0, data.length, parity, 0, parity.length, (error) =>
      error ? reject(error) : resolve(),
    );
  });
}

/** The P parity strips of D data strips of equal size (a multiple of 8 bytes). */
export async function encodeParity(policy: EcPolicy, dataStrips: readonly Buffer[]): Promise<Buffer[]> {
  const share = dataStrips[0]!.length;
  const data = Buffer.concat(dataStrips as Buffer[]);
  const parity = Buffer.alloc(share * policy.parity);
  const all = Array.from({ length: policy.data }, (_, i) => i);
  await run(policy, all, Array.from({ length: policy.parity }, (_, i) => policy.data + i), data, parity);
  return Array.from({ length: policy.parity }, (_, i) => parity.subarray(i * share, (i + 1) * share));
}

/**
 * The strips `wanted` from at least D of the others (`strips[i]` undefined where missing).
 * Returns every strip, data first, the wanted ones filled in.
 */
export async function reconstruct(policy: EcPolicy, strips: ReadonlyArray<Buffer | undefined>, wanted: readonly number[]): Promise<Buffer[]> {
  const present = strips.flatMap((strip, index) => (strip === undefined ? [] : [index]));
  if (present.length < policy.data) throw new RangeError(`${present.length} strips of ${policy.data} needed`);
  const share = strips[present[0]!]!.length;
  const data = Buffer.alloc(share * policy.data);
  const parity = Buffer.alloc(share * policy.parity);
  const at = (index: number) => (index < policy.data ? data.subarray(index * share, (index + 1) * share) : parity.subarray((index - policy.data) * share, (index - policy.data + 1) * share));
  for (const index of present) strips[index]!.copy(at(index));
  const targets = wanted.filter((index) => strips[index] === undefined);
  if (targets.length > 0) await run(policy, present, targets, data, parity);
  return Array.from({ length: policy.data + policy.parity }, (_, index) => at(index));
}
