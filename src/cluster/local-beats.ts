// Which members of the `local` driver stopped beating. Every member bumps a counter in its own
// heartbeat file (DIR/beat.<inc>) each beat interval; every member reads the others' at the same
// pace. A member whose counter reads the same on `staleChecks` checks in a row is not answering
// (SIGSTOP, a hung event loop), whatever its pid says. Pure: fed readings, no clock. Counting our
// own checks rather than reading a clock makes it safe against wall-clock jumps and against our
// own stalls: a checker that was itself stopped reads a fresh counter at its first check.

export class BeatWatch {
  private readonly seen = new Map<string, { text: string; unchanged: number }>();

  constructor(private readonly staleChecks: number) {}

  /**
   * One reading of `inc`'s heartbeat (`null`: the file is missing, which counts as a value that
   * does not change). True once it has read the same for `staleChecks` checks in a row. A check
   * that could not read the file (EMFILE...) must not be passed in: it proves nothing.
   */
  stale(inc: string, text: string | null): boolean {
    const value = text ?? '';
    const last = this.seen.get(inc);
    if (last === undefined || last.text !== value) {
      this.seen.set(inc, { text: value, unchanged: 0 });
      return false;
    }
    last.unchanged += 1;
    return last.unchanged >= this.staleChecks;
  }

  /** Forgets every incarnation not in `incs` (left members). */
  retain(incs: ReadonlySet<string>): void {
    for (const inc of this.seen.keys()) if (!incs.has(inc)) this.seen.delete(inc);
  }
}
