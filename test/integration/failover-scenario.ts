import type { TimelineEvent } from '../../client-sdk/src/types';
import { compareEventIds } from '../../server/timeline/event-id';
import { executeAsync, getHistory } from '../helpers/api';
import { execute, newSessionId, synthetic, type RunningService } from '../helpers/service';
import { isNamed, seqAtLeast, timelineEvents, type SseReader, type StreamFollower } from '../helpers/sse-reader';
import { within } from '../helpers/wait';

export interface FailoverScenario {
  /** Two instances of the service on the deployment. */
  instances: [RunningService, RunningService];
  streams: StreamFollower;
  /** Kills (SIGKILL) the master serving `sessionId` and resolves once a replica replaced it. */
  failOver(sessionId: string): Promise<void>;
  /** Runs going at once, each on one instance and streamed on the other. Defaults to `6`. */
  sessions?: number;
}

/** How long a stream may take to end once the deployment has failed over (a loaded CI machine). */
const DONE_AFTER_FAILOVER_MS = 30000;
const EVENTS = 80;

type Ev = TimelineEvent;

/**
 * What a reader must hold after a failover: each event once, in order; a hole in the seqs
 * only behind an explicit `event: gap`; then `done` `completed`.
 */
function expectCompleteTimeline(reader: SseReader, doneData: string): Ev[] {
  const events = timelineEvents<Ev>(reader);
  const ids = events.map((event) => event.event_id);
  expect(new Set(ids).size).toBe(ids.length);
  for (let i = 1; i < events.length; i++) expect(events[i].seq).toBeGreaterThan(events[i - 1].seq);
  const contiguous = events.every((event, i) => event.seq === i + 1);
  if (!contiguous) expect(reader.frames.some(isNamed('gap'))).toBe(true);
  expect(events.at(-1)).toMatchObject({ type: 'WORKFLOW_COMPLETE', seq: EVENTS + 2 });
  expect(JSON.parse(doneData)).toMatchObject({ status: 'completed' });
  return events;
}

/**
 * Runs going on both instances, streamed on the other one, while the master of one of them
 * is killed: every run still ends `completed`, every reader gets each event once (a loss only
 * behind `event: gap`), a reader resumes on the other instance, and new runs work afterwards.
 */
export async function expectRunsToSurviveFailover({ instances, streams, failOver, sessions = 6 }: FailoverScenario): Promise<void> {
  const sessionIds = Array.from({ length: sessions }, newSessionId);
  const readers = await Promise.all(sessionIds.map((sessionId, i) => streams.follow(instances[(i + 1) % 2].url, sessionId)));
  const started = await Promise.all(
    sessionIds.map((sessionId, i) => executeAsync(instances[i % 2].url, synthetic(sessionId, { events: EVENTS, interval_ms: 40 }))),
  );
  expect(started.map((response) => response.status)).toEqual(sessionIds.map(() => 202));
  await Promise.all(readers.map((reader) => reader.waitFor(seqAtLeast(5), 15000, 'seq 5 before the failover')));

  await failOver(sessionIds[0]);

  const dones = await within(
    Promise.all(readers.map((reader) => reader.waitFor(isNamed('done'), DONE_AFTER_FAILOVER_MS, 'done after the failover'))),
    DONE_AFTER_FAILOVER_MS + 5000,
    'every run to end',
  );
  const timelines = readers.map((reader, i) => expectCompleteTimeline(reader, dones[i].data));

  // The log holds what the readers saw (all of it, unless Redis lost some: then they were told).
  const history = (await getHistory(instances[0].url, sessionIds[0])).json;
  const logged = (history.events as Ev[]).map((event) => event.event_id);
  const seen = new Set(timelines[0].map((event) => event.event_id));
  expect(logged.every((id) => seen.has(id))).toBe(true);
  expect(history.done?.id).toBe(dones[0].id);

  // A reader that drops out resumes on the other instance after its last id: the rest, once.
  const cut = timelines[0][9];
  const resumed = await streams.follow(instances[1].url, sessionIds[0], { 'Last-Event-ID': cut.event_id });
  const resumedDone = await resumed.waitFor(isNamed('done'), 10000, 'done on the resumed stream');
  expect(resumedDone.id).toBe(dones[0].id);
  const after = logged.filter((id) => compareEventIds(id, cut.event_id) > 0);
  expect(timelineEvents<Ev>(resumed).map((event) => event.event_id)).toEqual(after);

  // New sessions work on both instances after the failover.
  for (const instance of instances) {
    const response = await execute(instance.url, synthetic(newSessionId(), { events: 5, interval_ms: 0 }));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ status: 'completed', event_count: 7 });
  }
}
