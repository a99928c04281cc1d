import type { Logger } from 'pino';
import type { Config } from '../config';
import { redactUrl } from '../log';
import { AnthropicModel, type AnthropicModelOptions } from './anthropic-model';
import type { Model } from './model';
import { ScriptedModel } from './scripted-model';

/** Options for the Anthropic model that the configuration does not set (tests shorten the waits). */
export type AnthropicTuning = Omit<AnthropicModelOptions, 'apiKey' | 'model' | 'baseUrl' | 'log'>;

/** Claude when `ANTHROPIC_API_KEY` is set; otherwise the offline scripted model. */
export function createModel(config: Config, log: Logger, tuning: AnthropicTuning = {}): Model {
  if (!config.anthropicApiKey) {
    log.info({ model: 'scripted' }, 'no ANTHROPIC_API_KEY: using the offline scripted model');
    return new ScriptedModel();
  }
  log.info({ model: config.anthropicModel, base_url: config.anthropicBaseUrl ? redactUrl(config.anthropicBaseUrl) : 'default' }, 'using Claude');
  return new AnthropicModel({
    ...tuning,
    apiKey: config.anthropicApiKey,
    model: config.anthropicModel,
    baseUrl: config.anthropicBaseUrl,
    log,
  });
}
