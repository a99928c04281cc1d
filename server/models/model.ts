import type { ModelErrorCode } from '../contract/error-codes';

/** A chat model that streams text: the scripted offline model or the Anthropic provider. */

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
}

export interface Model {
  readonly name: string;
  stream(request: ModelRequest, options: ModelCallOptions): Promise<ModelReply>;
}

/**
 * A failure of the model provider (overloaded, bad key, broken stream): the run fails with
 * `code` and the synchronous execute answers `502 workflow_failed`.
 */
export class ModelError extends Error {
  constructor(
    readonly code: ModelErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ModelError';
  }
}
