/**
 * Runs held per caller on this instance (`MAX_RUNS_PER_CALLER`): one caller cannot take all
 * of an instance's runs (and its model key's spending) for itself. A caller is whoever the
 * HTTP layer says: the authenticated caller, or the client's address when auth is off.
 */
export class CallerSlots {
  private readonly held = new Map<string, number>();

  constructor(private readonly perCaller: number) {}

  /** Takes a slot for `caller`; `false` (nothing taken) when it holds `perCaller` already. */
  tryTake(caller: string): boolean {
    const count = this.held.get(caller) ?? 0;
    if (count >= this.perCaller) return false;
    this.held.set(caller, count + 1);
    return true;
  }

  release(caller: string): void {
    const count = this.held.get(caller) ?? 0;
    // Forgotten at zero: the map holds the callers with runs, not every caller ever seen.
    if (count <= 1) this.held.delete(caller);
    else this.held.set(caller, count - 1);
  }

  /** Callers holding at least one slot (tests, metrics). */
  get callerCount(): number {
    return this.held.size;
  }
}
