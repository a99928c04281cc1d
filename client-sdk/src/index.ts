export { TimelineClient } from './client.js';
export type { ExecuteOptions, FollowOptions, RunRequest, TimelineClientOptions } from './client.js';
export type { ConnectionState, TimelineRun, RunCallbacks, RunOptions } from './run.js';
export { TimelineError } from './errors.js';
export type { ClientErrorCode, TimelineErrorCode } from './errors.js';
export type { ReconnectOptions } from './backoff.js';
export type { FetchLike, HeadersOption } from './api.js';
export { TIMELINE_EVENT_TYPES } from './types.js';
export type * from './types.js';
