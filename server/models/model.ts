import type { ModelErrorCode } from '../contract/error-codes';

/** A chat model that streams text: the scripted offline model or the Anthropic provider. */

import type { Logger } from 'pino';

export interface ModelMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface ModelRequest {
  /** What the call is for (`route`, `writer`, `researcher`, a discussion agent): logs, scripts. */
  purpose: string;
  system: string;
  messages: ModelMessage[];
  maxTokens: number;
}

export interface ModelUsage {
  input_tokens: number;
  output_tokens: number;
}

export interface ModelReply {
  text: string;
  usage: ModelUsage;
}

export interface ModelCallOptions {
  /** Aborting it stops the model call at once; the call then rejects. */
  signal: AbortSignal;
  /** Receives each piece of text as the model produces it. */
  onText?: (delta: string) => void;
  /** Where the call logs (a run's logger, with its session and request ids). Defaults to the model's own. */
  log?: Logger;
}

export interface Model {
  /** The provider (`anthropic`, `scripted`). */
  readonly name: string;
  /** The provider's model (`claude-…`), for metrics and spans. Defaults to `name`. */
  readonly id?: string;
  stream(request: ModelRequest, options: ModelCallOptions): Promise<ModelReply>;
}

/**
 * A failure of the model provider (overloaded, bad key, broken stream): the run fails with
 * `code` and the synchronous execute answers `502 workflow_failed`. `message` reaches clients
 * (`done.error`, `WORKFLOW_ERROR`, the 502), so it is ours and generic; what the provider said
 * (it can name internal organisations or projects) is `detail`, for the log only.
 */
export class ModelError extends Error {
  /** The provider's own words about the failure; logged, never sent to a client. */
  readonly detail: string | null;

  constructor(
    readonly code: ModelErrorCode,
    message: string,
    options: { cause?: unknown; detail?: string | null } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'ModelError';
    this.detail = options.detail ?? null;
  }
}
