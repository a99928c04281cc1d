import type { TimelineEvent } from '@timeline/client';

const TIME = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  fractionalSecondDigits: 3,
  hour12: false,
});

function element<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Marks a node as the rendering of one event, so a test (or a person) can tell each apart. */
function keyed<T extends HTMLElement>(node: T, event: TimelineEvent): T {
  node.dataset.eventId = event.event_id;
  node.dataset.seq = String(event.seq);
  node.dataset.type = event.type;
  return node;
}

/**
 * The live timeline: one row per step, and model text (`AGENT_TOKEN`) streamed into the card
 * of the agent that is speaking instead of a row per chunk. The SDK hands over each event
 * once, in order, across reconnects, so each is simply rendered.
 */
export class TimelineView {
  readonly #list: HTMLOListElement;
  #count = 0;
  /** The text area of each agent's latest card, where its tokens go. */
  readonly #cards = new Map<string, HTMLElement>();

  constructor(list: HTMLOListElement) {
    this.#list = list;
  }

  /** How many events were rendered (rows and token chunks). */
  get count(): number {
    return this.#count;
  }

  clear(): void {
    this.#list.replaceChildren();
    this.#count = 0;
    this.#cards.clear();
  }

  add(event: TimelineEvent): void {
    this.#count += 1;
    const agent = event.agent_name ?? '';
    if (event.type === 'AGENT_TOKEN') {
      const chunk = keyed(element('span', 'token', event.details.text), event);
      // A card whose start was trimmed from the log (a gap) is opened by the first token, unkeyed.
      (this.#cards.get(agent) ?? this.#openCard(event, false)).append(chunk);
      return;
    }
    if (event.type === 'AGENT_START') {
      this.#openCard(event);
      return;
    }
    this.#list.append(this.#row(event));
    if (event.type === 'AGENT_COMPLETE' || event.type === 'AGENT_MESSAGE') this.#closeCard(agent);
  }

  /** A line that is not an event (events lost to a trimmed log, say). */
  addNotice(text: string): void {
    this.#list.append(element('li', 'step notice-row', text));
  }

  #row(event: TimelineEvent, key = true): HTMLLIElement {
    const row = element('li', `step status-${event.status.toLowerCase()}`);
    if (key) keyed(row, event);
    const head = element('div', 'step-head');
    const time = element('time', 'step-time', TIME.format(new Date(event.timestamp)));
    time.dateTime = event.timestamp;
    head.append(
      element('span', 'step-seq', `#${event.seq}`),
      element('span', 'step-agent', event.agent_name ?? 'workflow'),
      element('span', 'step-status', event.status.replace('_', ' ').toLowerCase()),
      time,
    );
    row.append(head, element('p', 'step-message', event.message));
    return row;
  }

  /** An agent's card: its start row plus the text it streams; later tokens of that agent go here. */
  #openCard(event: TimelineEvent, key = true): HTMLElement {
    const card = this.#row(event, key);
    card.classList.add('agent-card', 'streaming');
    // The list announces new rows; a region that grows by a few words 20 times a second must not.
    const text = element('p', 'tokens');
    text.setAttribute('aria-live', 'off');
    card.append(text);
    this.#list.append(card);
    this.#cards.set(event.agent_name ?? '', text);
    return text;
  }

  #closeCard(agent: string): void {
    this.#cards.get(agent)?.closest('.agent-card')?.classList.remove('streaming');
    this.#cards.delete(agent);
  }
}
