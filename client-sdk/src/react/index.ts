export { useTimeline } from './use-timeline.js';
export type { UseTimelineOptions, UseTimelineResult } from './use-timeline.js';
export type { TimelineState, TimelineStatus } from './timeline-store.js';
