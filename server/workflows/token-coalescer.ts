import type { WorkflowContext } from './workflow';
import { capitalize } from '../utils/capitalize';

export interface TokenCoalescerOptions {
  /** Longest time a delta waits before it is emitted, in milliseconds. Defaults to `50`. */
  intervalMs?: number;
}

/**
 * Collects one agent's streamed text and emits it as `AGENT_TOKEN` steps at most once per
 * interval, so a fast model does not produce one event per token.
 */
export class TokenCoalescer {
  private readonly intervalMs: number;
  private pending = '';
  private timer: NodeJS.Timeout | undefined;
  /** Emits chained one after another, so flushes keep their order. Never rejects. */
  private chain: Promise<void> = Promise.resolve();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly ctx: Pick<WorkflowContext, 'emit'>,
    private readonly agentName: string,
    options: TokenCoalescerOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 50;
  }

  push(delta: string): void {
    this.pending += delta;
    if (this.pending !== '') {
      this.timer ??= setTimeout(() => this.emitPending(), this.intervalMs);
    }
  }

  /** Emits what remains now; resolves once every emit is done, rejects if one failed. */
  async flush(): Promise<void> {
    this.emitPending();
    await this.chain;
    if (this.failure) throw this.failure.error;
  }

  /**
   * Drops what remains and stops the timer, for a stream that failed: its error is the one
   * that matters, and nothing of the agent should be emitted after it.
   */
  discard(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = '';
  }

  private emitPending(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.chain = this.chain
      .then(() => {
        if (this.failure) return;
        return this.ctx.emit({
          type: 'AGENT_TOKEN',
          status: 'IN_PROGRESS',
          message: `${capitalize(this.agentName)} streamed ${text.length} characters`,
          agent_name: this.agentName,
          details: { text, chars: text.length },
        });
      })
      // Kept and rethrown by flush(): a timer callback has no caller to reject to.
      .catch((error: unknown) => {
        this.failure ??= { error };
      });
  }
}
