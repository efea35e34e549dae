// The trace of one simulated run: every line hashed (FNV-1a 64) so two runs can be compared by
// one number, and the last lines kept to print when an invariant fails.
export const traceTailLines = 40;

const fnvOffset = 0xcbf29ce484222325n;
const fnvPrime = 0x100000001b3n;
const mask64 = (1n << 64n) - 1n;

export class Trace {
  private hashValue = fnvOffset;
  private readonly tail: string[] = [];
  lines = 0;

  constructor(private readonly now: () => number) {}

  /** Records one line, stamped with the simulated time. */
  record(line: string): void {
    const stamped = `${this.now().toFixed(3)} ${line}`;
    this.lines += 1;
    let hash = this.hashValue;
    for (let i = 0; i < stamped.length; i++) {
      hash ^= BigInt(stamped.charCodeAt(i));
      hash = (hash * fnvPrime) & mask64;
    }
    this.hashValue = hash;
    this.tail.push(stamped);
    if (this.tail.length > traceTailLines) this.tail.shift();
  }

  get hash(): string {
    return this.hashValue.toString(16).padStart(16, '0');
  }

  last(): string[] {
    return [...this.tail];
  }
}
