import Anthropic from '@anthropic-ai/sdk';
import type { Logger } from 'pino';
import { toModelError } from './anthropic-errors';
import type { Model, ModelCallOptions, ModelReply, ModelRequest } from './model';
import { boundRetryDelay } from './retry-delay';

export interface AnthropicModelOptions {
  apiKey: string;
  /** The Claude model (`ANTHROPIC_MODEL`; its default lives in the config). */
  model: string;
  /** API base URL; `null` means the SDK's default. Defaults to `null`. */
  baseUrl?: string | null;
  /** Retries of a failed request (429, 5xx, 529, connection errors), by the SDK's policy. Defaults to `2`. */
  maxRetries?: number;
  /**
   * Longest wait before retrying a failed response, whatever its `retry-after` says (a dropped
   * connection keeps the SDK's backoff, at most 8 s). Defaults to `8000`.
   */
  maxRetryDelayMs?: number;
  /** How long one attempt waits for the response head. Defaults to `60000`. */
  requestTimeoutMs?: number;
  /** Longest silence between two stream events before the call fails with `model_timeout`. Defaults to `60000`. */
  idleTimeoutMs?: number;
  log: Logger;
}

/** The SDK's own default API host, given explicitly: left unset, the SDK would read `ANTHROPIC_BASE_URL` itself. */
const ANTHROPIC_API_URL = 'https://api.anthropic.com';

const DEFAULTS = {
  maxRetries: 2,
  maxRetryDelayMs: 8000,
  requestTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
};

/**
 * Claude through `@anthropic-ai/sdk`'s streaming API. Text deltas go to `onText` as they
 * arrive; aborting the call's signal aborts the HTTP request (the upstream connection closes)
 * and rejects with the signal's reason; every provider failure becomes a `ModelError`.
 */
export class AnthropicModel implements Model {
  readonly name = 'anthropic';
  readonly model: string;
  private readonly client: Anthropic;
  private readonly maxRetries: number;
  private readonly idleTimeoutMs: number;
  private readonly log: Logger;

  constructor(options: AnthropicModelOptions) {
    this.model = options.model;
    this.maxRetries = options.maxRetries ?? DEFAULTS.maxRetries;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs;
    this.log = options.log.child({ model: this.model });
    this.client = new Anthropic({
      apiKey: options.apiKey,
      // Everything explicit, so the SDK reads no environment variable: the service's config is the only source.
      baseURL: options.baseUrl ?? ANTHROPIC_API_URL,
      webhookKey: null,
      logLevel: 'warn',
      maxRetries: this.maxRetries,
      timeout: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      middleware: [boundRetryDelay(options.maxRetryDelayMs ?? DEFAULTS.maxRetryDelayMs)],
      logger: sdkLogger(this.log),
    });
  }

  get id(): string {
    return this.model;
  }

  async stream(request: ModelRequest, options: ModelCallOptions): Promise<ModelReply> {
    const { signal, onText } = options;
    const log = options.log?.child({ model: this.model }) ?? this.log;
    signal.throwIfAborted();
    const stream = this.client.messages.stream(
      {
        model: this.model,
        max_tokens: request.maxTokens,
        system: request.system,
        messages: request.messages,
      },
      { signal },
    );
    let connected = false;
    let settled = false;
    let stalled = false;
    let idle: NodeJS.Timeout | undefined;
    // Before the head arrives the SDK's request timeout applies; after it, silence is ours to bound.
    stream.once('connect', () => {
      connected = true;
      idle = setTimeout(() => {
        stalled = true;
        stream.abort();
      }, this.idleTimeoutMs);
    });
    // Re-arms the one timer: no timer is made per event.
    stream.on('streamEvent', () => idle?.refresh());
    stream.on('text', (delta) => {
      if (!settled) onText?.(delta);
    });

    let onAbort: () => void = () => undefined;
    // Settles on the abort itself, not when the SDK has finished unwinding the request.
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const message = await Promise.race([stream.finalMessage(), aborted]);
      const text = message.content.flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('');
      if (message.stop_reason !== 'end_turn') {
        log.info({ purpose: request.purpose, stop_reason: message.stop_reason }, 'model stopped early');
      }
      return {
        text,
        usage: { input_tokens: message.usage.input_tokens, output_tokens: message.usage.output_tokens },
      };
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const failure = toModelError(error, {
        connected,
        stalledAfterMs: stalled ? this.idleTimeoutMs : null,
        maxRetries: this.maxRetries,
      });
      // The provider's words stay here, in the log: clients get the code and our own message.
      log.warn({ purpose: request.purpose, code: failure.code, provider_detail: failure.detail, err: error }, 'model call failed');
      throw failure;
    } finally {
      settled = true;
      clearTimeout(idle);
      signal.removeEventListener('abort', onAbort);
      // After a failure the request may still be open (an idle stall, an abort race): close it.
      if (!stream.ended) stream.abort();
    }
  }
}

/** The SDK's log lines through pino, so nothing goes to the console. */
function sdkLogger(log: Logger) {
  const child = log.child({ component: 'anthropic-sdk' });
  const at =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (message: string, ...rest: unknown[]) =>
      child[level](rest.length > 0 ? { details: rest } : {}, message);
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
