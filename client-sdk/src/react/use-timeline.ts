import { useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { TimelineClient, type RunRequest, type TimelineClientOptions } from '../client.js';
import { defaultPersistKey, sessionStoragePersistence } from './session-persistence.js';
import { TimelineStore, type TimelineState } from './timeline-store.js';

export interface UseTimelineOptions extends TimelineClientOptions {
  /**
   * Keeps the session id and the last event id in `sessionStorage`, so a reload reattaches to
   * the run and shows its whole timeline again. `{ key }` names the storage key (two timelines
   * on one page need two). Defaults to `true`, with a key made from `baseUrl`; `false` = off.
   */
  persist?: boolean | { key: string };
}

export interface UseTimelineResult<R = unknown> extends TimelineState<R> {
  /**
   * Starts a run of `body` (the `POST /execute` body without `session_id`) and returns its
   * session id. While a run is `waiting` or `running` it starts nothing and returns that run's id.
   */
  start(body: RunRequest): string;
  /** Asks the server to cancel the run; `status` becomes `cancelled` when its `done` arrives. */
  cancel(): Promise<void>;
  /** Back to `idle`, forgetting the session (also for reloads); a running run goes on on the server. */
  reset(): void;
}

// Attaching before paint shows a resumed session without an `idle` frame first; on a server
// (no effects run there) plain useEffect keeps React 18 from warning about layout effects.
const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

function storageKey(options: UseTimelineOptions): string | null {
  const { persist = true } = options;
  if (persist === false) return null;
  return persist === true ? defaultPersistKey(options.baseUrl) : persist.key;
}

/**
 * Follows one session of the timeline service: `start(body)` runs a workflow, `events` grows
 * as it runs, `status`, `result` and `error` tell how it ended. The run survives reloads
 * (see `persist`), and a StrictMode double mount never opens a second stream or run.
 *
 * `baseUrl` and `persist` pick the session store (changing either starts afresh); `headers`
 * and `fetch` are read per request, so a new token applies to the next request; the other
 * client options are read when the store is made.
 */
export function useTimeline<R = unknown>(options: UseTimelineOptions): UseTimelineResult<R> {
  const key = storageKey(options);
  const latest = useRef(options);
  useIsomorphicLayoutEffect(() => {
    latest.current = options;
  });

  const make = (): { baseUrl: string; key: string | null; store: TimelineStore<R> } => {
    const client = new TimelineClient({
      ...options,
      headers: async () => {
        const { headers } = latest.current;
        return (typeof headers === 'function' ? await headers() : headers) ?? {};
      },
      fetch: (url, init) => (latest.current.fetch ?? globalThis.fetch)(url, init),
    });
    return { baseUrl: options.baseUrl, key, store: new TimelineStore<R>(client, key === null ? null : sessionStoragePersistence(key)) };
  };
  const [current, setCurrent] = useState(make);
  let { store } = current;
  if (current.baseUrl !== options.baseUrl || current.key !== key) {
    // Another service or storage key: another store (React re-renders at once with it).
    const next = make();
    store = next.store;
    setCurrent(next);
  }

  useIsomorphicLayoutEffect(() => {
    store.attach();
    return () => store.detach();
  }, [store]);

  const state = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getServerSnapshot);
  return useMemo(() => ({ ...state, start: store.start, cancel: store.cancel, reset: store.reset }), [state, store]);
}
