import { readSse, type SseItem } from '../../src/sse-reader';

/** mulberry32: a small seeded PRNG, so a failing split can be replayed from its seed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cuts `bytes` at random places: single bytes, splits inside a UTF-8 character, large runs. */
function randomChunks(bytes: Uint8Array, random: () => number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const roll = random();
    const size = roll < 0.3 ? 1 : roll < 0.8 ? 1 + Math.floor(random() * 8) : 1 + Math.floor(random() * 200);
    chunks.push(bytes.slice(at, at + size));
    at += size;
  }
  return chunks;
}

function bodyOf(chunks: Uint8Array[], onCancel?: () => void): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++]);
      else controller.close();
    },
    cancel: onCancel,
  });
}

async function readAll(body: ReadableStream<Uint8Array>, onBytes?: () => void): Promise<SseItem[]> {
  const items: SseItem[] = [];
  for await (const item of readSse(body, onBytes)) items.push(item);
  return items;
}

const SESSION = '6f1c1a36-3c2a-4a55-9a3b-1f2d3c4b5a69';
const unicodeEvent = JSON.stringify({
  event_id: '1732212345678-0',
  session_id: SESSION,
  seq: 1,
  type: 'AGENT_TOKEN',
  status: 'IN_PROGRESS',
  message: 'Grüße, 世界 🌍🚀 — "quoted" \\ back\u2028slash',
  details: { text: 'line one\nline two' },
  timestamp: '2026-11-21T18:00:00.000Z',
});

/** The contract's frames, including the edge cases the spec allows. */
const WIRE = [
  'retry: 2000\n',
  `event: ready\ndata: {"session_id":"${SESSION}","status":"waiting"}\n\n`,
  ': ping\n\n',
  `id: 1732212345678-0\ndata: ${unicodeEvent}\n\n`,
  'event: gap\ndata: {"after":"1-0","first_available":"5-0"}\n\n',
  'id: 1732212345679-0\ndata: first line\ndata: second line\n\n',
  ':no space comment\n',
  'event: done\nid: 1732212345680-0\ndata: {"status":"completed","result":{"answer":"ok"}}\n\n',
].join('');

const EXPECTED: SseItem[] = [
  { kind: 'retry', ms: 2000 },
  { kind: 'message', message: { event: 'ready', id: undefined, data: `{"session_id":"${SESSION}","status":"waiting"}` } },
  { kind: 'comment', text: 'ping' },
  { kind: 'message', message: { event: undefined, id: '1732212345678-0', data: unicodeEvent } },
  { kind: 'message', message: { event: 'gap', id: undefined, data: '{"after":"1-0","first_available":"5-0"}' } },
  { kind: 'message', message: { event: undefined, id: '1732212345679-0', data: 'first line\nsecond line' } },
  { kind: 'comment', text: 'no space comment' },
  {
    kind: 'message',
    message: { event: 'done', id: '1732212345680-0', data: '{"status":"completed","result":{"answer":"ok"}}' },
  },
];

describe('readSse (the SDK stream reader)', () => {
  const encoder = new TextEncoder();

  it('reads the wire format in one chunk', async () => {
    expect(await readAll(bodyOf([encoder.encode(WIRE)]))).toEqual(EXPECTED);
  });

  it('reads the same items whatever the chunk boundaries (500 seeded random splits)', async () => {
    const bytes = encoder.encode(WIRE);
    for (let seed = 1; seed <= 500; seed++) {
      const chunks = randomChunks(bytes, seeded(seed));
      const items = await readAll(bodyOf(chunks));
      if (JSON.stringify(items) !== JSON.stringify(EXPECTED)) {
        // Names the seed, so the failing split can be replayed.
        expect({ seed, items }).toEqual({ seed, items: EXPECTED });
      }
    }
  });

  it('reads CRLF and CR line endings split anywhere, as the spec allows', async () => {
    for (const newline of ['\r\n', '\r']) {
      const bytes = encoder.encode(WIRE.replace(/\n/g, newline));
      for (let seed = 1; seed <= 100; seed++) {
        const items = await readAll(bodyOf(randomChunks(bytes, seeded(seed * 7919))));
        expect({ newline, seed, items }).toEqual({ newline, seed, items: EXPECTED });
      }
    }
  });

  it('splits every byte boundary of a multi-byte character correctly', async () => {
    const frame = encoder.encode(`id: 1-0\ndata: ${unicodeEvent}\n\n`);
    for (let cut = 1; cut < frame.length; cut++) {
      const items = await readAll(bodyOf([frame.slice(0, cut), frame.slice(cut)]));
      expect(items).toEqual([{ kind: 'message', message: { event: undefined, id: '1-0', data: unicodeEvent } }]);
    }
  });

  it('drops a half-received event at the end of the body (the spec: no dispatch without a blank line)', async () => {
    const first = { kind: 'message', message: { event: undefined, id: '1-0', data: '{"a":1}' } };
    expect(await readAll(bodyOf([encoder.encode('id: 1-0\ndata: {"a":1}\n\nid: 2-0\ndata: {"a":')]))).toEqual([first]);
    // Line complete, event not: the final blank line never came.
    expect(await readAll(bodyOf([encoder.encode('id: 1-0\ndata: {"a":1}\n\ndata: 2\n')]))).toEqual([first]);
    expect(await readAll(bodyOf([encoder.encode('id: 1-0\rdata: {"a":1}\r\rdata: 2\r')]))).toEqual([first]);
  });

  it('reports every chunk to onBytes, comments included (the stall timer counts them as life)', async () => {
    const chunks = [': ping\n\n', ': ping\n\n', 'data: x\n\n'].map((text) => encoder.encode(text));
    let calls = 0;
    const items = await readAll(bodyOf(chunks), () => calls++);
    expect(calls).toBe(3);
    expect(items.map((item) => item.kind)).toEqual(['comment', 'comment', 'message']);
  });

  it('cancels the body when the caller stops reading early', async () => {
    let cancelled = false;
    const body = bodyOf([encoder.encode('data: 1\n\n'), encoder.encode('data: 2\n\n')], () => {
      cancelled = true;
    });
    for await (const item of readSse(body)) {
      expect(item).toEqual({ kind: 'message', message: { event: undefined, id: undefined, data: '1' } });
      break;
    }
    expect(cancelled).toBe(true);
  });

  it('passes a broken body on to the caller', async () => {
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) {
          controller.error(new TypeError('terminated'));
          return;
        }
        sent = true;
        controller.enqueue(encoder.encode('data: 1\n\n'));
      },
    });
    const items: SseItem[] = [];
    await expect(
      (async () => {
        for await (const item of readSse(body)) items.push(item);
      })(),
    ).rejects.toThrow('terminated');
    expect(items).toHaveLength(1);
  });
});
