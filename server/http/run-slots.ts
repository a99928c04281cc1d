/** `MAX_RUNS`: the runs executing on this instance. */
export class RunSlots {
  private taken = 0;

  constructor(private readonly maxRuns: number) {}

  get size(): number {
    return this.taken;
  }

  /** Takes a slot before any await, so concurrent requests cannot overshoot the limit. */
  tryTake(): boolean {
    if (this.taken >= this.maxRuns) return false;
    this.taken += 1;
    return true;
  }

  release(): void {
    this.taken -= 1;
  }
}
