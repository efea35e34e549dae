// A Disk wrapper that fails and slows down on purpose: latency drawn from a seeded Random and
// spent on a Clock, EIO and ENOSPC by rule (this operation, this path, the next N times) or by
// probability. A failed operation does nothing: the inner disk never sees it. Rules can change
// while the disk is in use, so a simulator can start and stop a fault.
import type { Clock } from './clock.js';
import type { Disk, DiskFile, DiskStats } from './disk.js';
import type { Random } from './random.js';

export type DiskOperation =
  | 'open'
  | 'read'
  | 'write'
  | 'truncate'
  | 'datasync'
  | 'sizeBytes'
  | 'close'
  | 'rename'
  | 'link'
  | 'remove'
  | 'list'
  | 'mkdirs'
  | 'exists'
  | 'syncDir'
  | 'stats'
  | 'usedBytes';

export type DiskFaultCode = 'EIO' | 'ENOSPC';

export interface DiskFaultRule {
  /** The operations the rule applies to; all when absent. */
  operations?: readonly DiskOperation[];
  /** Applies only to paths that contain this text. */
  pathIncludes?: string;
  /** Chance that a matching operation fails, 0..1; 1 when absent. */
  probability?: number;
  /** The rule retires after failing this many operations; unlimited when absent. */
  times?: number;
  code: DiskFaultCode;
}

export interface DiskLatency {
  minMs: number;
  maxMs: number;
}

export interface FaultDiskOptions {
  clock: Clock;
  random: Random;
  latency?: DiskLatency;
  rules?: readonly DiskFaultRule[];
}

export class DiskFault extends Error {
  constructor(
    readonly code: DiskFaultCode,
    operation: DiskOperation,
    file: string,
  ) {
    super(`${code}: injected fault on ${operation} ${file}`);
    this.name = 'DiskFault';
  }
}

export class FaultDisk implements Disk {
  private rules: Array<DiskFaultRule & { failed: number }> = [];
  latency: DiskLatency;
  /** Faults injected so far, by operation (for a simulator's report). */
  readonly injected = new Map<DiskOperation, number>();

  constructor(
    private readonly inner: Disk,
    private readonly options: FaultDiskOptions,
  ) {
    this.latency = options.latency ?? { minMs: 0, maxMs: 0 };
    this.setRules(options.rules ?? []);
  }

  setRules(rules: readonly DiskFaultRule[]): void {
    this.rules = rules.map((rule) => ({ ...rule, failed: 0 }));
  }

  addRule(rule: DiskFaultRule): void {
    this.rules.push({ ...rule, failed: 0 });
  }

  clearRules(): void {
    this.rules = [];
  }

  /** Waits the latency, then throws the fault a rule picks, or returns to let the call through. */
  async gate(operation: DiskOperation, file: string): Promise<void> {
    const { minMs, maxMs } = this.latency;
    if (maxMs > 0) await this.options.clock.sleep(minMs + this.options.random.float() * (maxMs - minMs));
    for (const rule of this.rules) {
      if (rule.operations && !rule.operations.includes(operation)) continue;
      if (rule.pathIncludes !== undefined && !file.includes(rule.pathIncludes)) continue;
      if (rule.times !== undefined && rule.failed >= rule.times) continue;
      if (rule.probability !== undefined && this.options.random.float() >= rule.probability) continue;
      rule.failed += 1;
      this.injected.set(operation, (this.injected.get(operation) ?? 0) + 1);
      throw new DiskFault(rule.code, operation, file);
    }
  }

  async open(file: string, mode: 'read' | 'write' | 'create'): Promise<DiskFile> {
    await this.gate('open', file);
    return new FaultFile(this, await this.inner.open(file, mode), file);
  }

  async rename(source: string, target: string): Promise<void> {
    await this.gate('rename', source);
    return this.inner.rename(source, target);
  }

  async link(existing: string, alias: string): Promise<void> {
    await this.gate('link', alias);
    return this.inner.link(existing, alias);
  }

  async remove(file: string): Promise<void> {
    await this.gate('remove', file);
    return this.inner.remove(file);
  }

  async list(dir: string): Promise<string[]> {
    await this.gate('list', dir);
    return this.inner.list(dir);
  }

  async mkdirs(dir: string): Promise<void> {
    await this.gate('mkdirs', dir);
    return this.inner.mkdirs(dir);
  }

  async exists(file: string): Promise<boolean> {
    await this.gate('exists', file);
    return this.inner.exists(file);
  }

  async syncDir(dir: string): Promise<void> {
    await this.gate('syncDir', dir);
    return this.inner.syncDir(dir);
  }

  async stats(dir: string): Promise<DiskStats> {
    await this.gate('stats', dir);
    return this.inner.stats(dir);
  }

  async usedBytes(dir: string): Promise<number> {
    await this.gate('usedBytes', dir);
    return this.inner.usedBytes(dir);
  }
}

class FaultFile implements DiskFile {
  constructor(
    private readonly disk: FaultDisk,
    private readonly inner: DiskFile,
    private readonly file: string,
  ) {}

  async read(buffer: Buffer, offsetBytes: number): Promise<number> {
    await this.disk.gate('read', this.file);
    return this.inner.read(buffer, offsetBytes);
  }

  async write(data: Buffer, offsetBytes: number): Promise<void> {
    await this.disk.gate('write', this.file);
    return this.inner.write(data, offsetBytes);
  }

  async truncate(lengthBytes: number): Promise<void> {
    await this.disk.gate('truncate', this.file);
    return this.inner.truncate(lengthBytes);
  }

  async datasync(): Promise<void> {
    await this.disk.gate('datasync', this.file);
    return this.inner.datasync();
  }

  async sizeBytes(): Promise<number> {
    await this.disk.gate('sizeBytes', this.file);
    return this.inner.sizeBytes();
  }

  /** A close always releases the handle, even when a fault is reported. */
  async close(): Promise<void> {
    try {
      await this.disk.gate('close', this.file);
    } finally {
      await this.inner.close();
    }
  }
}
