/**
 * The service as a library: `createService` gives an Express app (mount it, or hand it to
 * supertest) with `listen` and a graceful `close`; `defineWorkflow` makes workflows of your
 * own. The protocol is docs/protocol.md; `npm start` runs this same entry (main.ts).
 */
export { createService } from './service';
export type { Service, ServiceOptions } from './service';
export { CONFIG_SETTINGS, ConfigError, DEFAULT_CONFIG, LOG_LEVELS, loadConfig, resolveConfig } from './config';
export type { Config } from './config';
export { defineWorkflow } from './workflows/define-workflow';
export type { JsonObject, WorkflowDefinition } from './workflows/define-workflow';
export type { StepDraft, Workflow, WorkflowContext, WorkflowInput } from './workflows/workflow';
export { ModelError } from './models/model';
export type { Model, ModelCallOptions, ModelMessage, ModelReply, ModelRequest, ModelUsage } from './models/model';
export { ERROR_CODES } from './contract/error-codes';
export type { DoneErrorCode, ErrorChannel, ErrorCode, ErrorCodeSpec, HttpErrorCode, ModelErrorCode } from './contract/error-codes';
export { TIMELINE_EVENT_TYPES } from '../client-sdk/src/types';
export type * from '../client-sdk/src/types';
