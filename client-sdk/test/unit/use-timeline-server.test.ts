import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
import { useTimeline } from '../../src/react';

/**
 * useTimeline in a server render (Next.js, Remix, …): it renders `idle`, touches neither the
 * network nor storage, and needs no DOM. In the browser it attaches after hydration
 * (client-sdk/test/e2e/react-reload.test.ts).
 */

it('renders idle on the server without a request or a storage access', () => {
  const requests: string[] = [];
  function Status() {
    const t = useTimeline({
      baseUrl: 'http://timeline.test',
      fetch: (url) => {
        requests.push(url);
        return Promise.reject(new Error('no network in a server render'));
      },
    });
    return createElement('p', { 'data-session': t.sessionId ?? '' }, `${t.status} ${t.events.length}`);
  }
  expect(typeof sessionStorage).toBe('undefined');
  expect(renderToString(createElement(Status))).toBe('<p data-session="">idle 0</p>');
  expect(requests).toEqual([]);
});
