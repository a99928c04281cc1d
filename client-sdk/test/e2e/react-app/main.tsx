// A small React app as a frontend developer writes one with @timeline/client/react, in
// StrictMode (React's development build, so effects run twice on mount). Bundled by esbuild in
// react-reload.test.ts; the query string sets what a test varies.
import { useTimeline } from '@timeline/client/react';
import { StrictMode, useEffect } from 'react';
import { createRoot } from 'react-dom/client';

declare global {
  interface Window {
    /** How many times this app's mount effect ran: 2 per mount proves StrictMode's double run. */
    effectRuns?: number;
  }
}

const query = new URLSearchParams(location.search);
const BASE_URL = query.get('service') ?? '';
const RUN = {
  project_id: 'react-app',
  query: 'reload me',
  workflow: 'synthetic',
  params: { events: Number(query.get('events') ?? 20), interval_ms: Number(query.get('interval') ?? 100) },
};

function Timeline() {
  const t = useTimeline<{ events: number }>({ baseUrl: BASE_URL, persist: query.get('persist') !== 'off' });
  const { start } = t;

  useEffect(() => {
    window.effectRuns = (window.effectRuns ?? 0) + 1;
    // An app that runs on open: StrictMode runs this twice; the hook still starts one run,
    // and after a reload it reattaches to that run instead of starting another.
    if (query.has('autostart')) start(RUN);
  }, [start]);

  return (
    <main>
      <p id="status" data-status={t.status}>
        {t.status}
      </p>
      <p id="session">{t.sessionId ?? ''}</p>
      <p id="error">{t.error?.code ?? ''}</p>
      <p id="result">{t.result === undefined ? '' : JSON.stringify(t.result)}</p>
      <button type="button" onClick={() => t.start(RUN)}>
        Start
      </button>
      <button type="button" onClick={() => void t.cancel()}>
        Cancel
      </button>
      <button type="button" onClick={t.reset}>
        Reset
      </button>
      <ol id="timeline">
        {t.events.map((event) => (
          <li key={event.event_id} data-seq={event.seq} data-id={event.event_id}>
            {event.seq} {event.type}
          </li>
        ))}
      </ol>
    </main>
  );
}

createRoot(document.getElementById('root') as HTMLElement).render(
  <StrictMode>
    <Timeline />
  </StrictMode>,
);
