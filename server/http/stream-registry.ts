/** The streams open on this instance: for `MAX_STREAMS`, metrics, and ending them all at shutdown. */
export class StreamRegistry {
  private readonly closers = new Set<() => void>();
  private reserved = 0;

  constructor(private readonly maxStreams: number) {}

  get size(): number {
    return this.closers.size + this.reserved;
  }

  /** Takes a slot before any await, so concurrent requests cannot overshoot the limit. */
  tryReserve(): boolean {
    if (this.size >= this.maxStreams) return false;
    this.reserved += 1;
    return true;
  }

  release(): void {
    this.reserved -= 1;
  }

  /** Turns a reservation into an open stream; returns its removal function. */
  add(close: () => void): () => void {
    this.reserved -= 1;
    this.closers.add(close);
    return () => this.closers.delete(close);
  }

  closeAll(): void {
    for (const close of [...this.closers]) close();
  }
}
