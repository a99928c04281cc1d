import {
  TimelineClient,
  type ConnectionState,
  type DoneRecord,
  type RunRequest,
  type TimelineError,
  type TimelineRun,
} from '@timeline/client';
import { TimelineView } from './timeline-view';

type RunStatus = 'idle' | 'starting' | 'running' | 'cancelling' | 'completed' | 'failed' | 'cancelled' | 'error';

const STATUS_TEXT: Record<RunStatus, string> = {
  idle: 'idle',
  starting: 'starting…',
  running: 'running',
  cancelling: 'cancelling…',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
  error: 'could not follow the run',
};

type ConnectionView = 'connecting' | ConnectionState | 'closed';

const CONNECTION_TEXT: Record<ConnectionView, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  closed: 'closed',
};

function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node as T;
}

const ui = {
  form: byId<HTMLFormElement>('run-form'),
  fields: byId<HTMLFieldSetElement>('run-fields'),
  project: byId<HTMLInputElement>('project'),
  query: byId<HTMLTextAreaElement>('query'),
  workflow: byId<HTMLSelectElement>('workflow'),
  agentsParams: byId<HTMLFieldSetElement>('agents-params'),
  route: byId<HTMLSelectElement>('route'),
  syntheticParams: byId<HTMLFieldSetElement>('synthetic-params'),
  events: byId<HTMLInputElement>('events'),
  interval: byId<HTMLInputElement>('interval'),
  token: byId<HTMLInputElement>('token'),
  notice: byId<HTMLParagraphElement>('notice'),
  runButton: byId<HTMLButtonElement>('run-button'),
  cancelButton: byId<HTMLButtonElement>('cancel-button'),
  status: byId<HTMLElement>('run-status'),
  connection: byId<HTMLElement>('connection'),
  sessionId: byId<HTMLElement>('session-id'),
  eventCount: byId<HTMLElement>('event-count'),
  answer: byId<HTMLElement>('answer'),
  answerText: byId<HTMLElement>('answer-text'),
  timeline: byId<HTMLOListElement>('timeline'),
  timelineEmpty: byId<HTMLElement>('timeline-empty'),
};

// The service is wherever this page is, also behind a path prefix (`https://host/timeline/`).
const BASE_URL = new URL('.', location.href).href.replace(/\/$/, '');

const view = new TimelineView(ui.timeline);
let current: TimelineRun | null = null;

function setStatus(status: RunStatus, detail?: string): void {
  ui.status.dataset.status = status;
  ui.status.textContent = detail ? `${STATUS_TEXT[status]}: ${detail}` : STATUS_TEXT[status];
}

function setConnection(state: ConnectionView): void {
  ui.connection.dataset.state = state;
  ui.connection.textContent = CONNECTION_TEXT[state];
}

function showNotice(text: string | null): void {
  ui.notice.hidden = text === null;
  ui.notice.textContent = text ?? '';
}

function showParams(): void {
  const synthetic = ui.workflow.value === 'synthetic';
  ui.syntheticParams.hidden = !synthetic;
  ui.syntheticParams.disabled = !synthetic;
  ui.agentsParams.hidden = synthetic;
  ui.agentsParams.disabled = synthetic;
}

function readRequest(): RunRequest {
  const workflow = ui.workflow.value;
  let params: Record<string, unknown> | undefined;
  if (workflow === 'synthetic') params = { events: ui.events.valueAsNumber, interval_ms: ui.interval.valueAsNumber };
  else if (ui.route.value) params = { route: ui.route.value };
  return { project_id: ui.project.value.trim(), query: ui.query.value, workflow, ...(params && { params }) };
}

function showAnswer(result: unknown): void {
  const answer = (result as { answer?: unknown } | null)?.answer;
  if (typeof answer === 'string') {
    ui.answerText.replaceChildren(
      ...answer
        .split(/\n{2,}/)
        .filter((paragraph) => paragraph.trim() !== '')
        .map((paragraph) => Object.assign(document.createElement('p'), { textContent: paragraph.trim() })),
    );
  } else {
    ui.answerText.replaceChildren(Object.assign(document.createElement('pre'), { textContent: JSON.stringify(result, null, 2) }));
  }
  ui.answer.hidden = false;
}

/** Back to a state where a new run can start; keyboard focus is not lost on a disabled button. */
function settle(): void {
  const hadFocus = document.activeElement === ui.cancelButton;
  current = null;
  setConnection('closed');
  ui.cancelButton.disabled = true;
  ui.cancelButton.removeAttribute('aria-disabled');
  ui.fields.disabled = false;
  ui.runButton.disabled = false;
  if (hadFocus) ui.runButton.focus();
}

function onDone(done: DoneRecord): void {
  settle();
  if (done.status === 'completed') {
    setStatus('completed');
    showAnswer(done.result);
  } else if (done.status === 'cancelled') {
    setStatus('cancelled');
  } else {
    setStatus('failed', done.error?.code ?? 'unknown error');
    showNotice(done.error?.message ?? 'The run failed.');
  }
}

function onError(error: TimelineError): void {
  settle();
  // A cancel before the run was started ends it here, without a `done` from the server.
  if (error.code === 'cancelled') {
    setStatus('cancelled');
    return;
  }
  setStatus('error', error.code);
  const hint = error.code === 'unauthorized' ? ' Set the access token and run again.' : '';
  showNotice(`${error.message}${hint}`);
}

function start(request: RunRequest, token: string): void {
  view.clear();
  ui.timelineEmpty.hidden = true;
  ui.answer.hidden = true;
  ui.eventCount.textContent = '0';
  showNotice(null);

  const client = new TimelineClient({
    baseUrl: BASE_URL,
    headers: token ? { Authorization: `Bearer ${token}` } : undefined,
  });
  const run = client.execute(request, {
    onEvent: (event) => {
      // Stay at the newest step unless the reader scrolled up to look at an older one.
      const list = ui.timeline;
      const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
      view.add(event);
      ui.eventCount.textContent = String(view.count);
      if (ui.status.dataset.status === 'starting') setStatus('running');
      if (atEnd) list.scrollTop = list.scrollHeight;
    },
    onGap: () => view.addNotice('Some earlier events had expired from the log before this page could read them.'),
    onConnection: setConnection,
    onDone,
    onError,
  });
  current = run;

  ui.sessionId.textContent = run.sessionId;
  setStatus('starting');
  setConnection('connecting');
  ui.fields.disabled = true;
  ui.runButton.disabled = true;
  ui.cancelButton.disabled = false;
  ui.cancelButton.focus();
}

async function cancel(): Promise<void> {
  const run = current;
  const button = ui.cancelButton;
  if (!run || button.getAttribute('aria-disabled') === 'true') return;
  // aria-disabled, not disabled: a disabled button drops keyboard focus to the page's start.
  button.setAttribute('aria-disabled', 'true');
  setStatus('cancelling');
  try {
    await run.cancel();
  } catch (error) {
    if (run.finished) return;
    // Still running: say why, and let the person try again.
    setStatus('running');
    button.removeAttribute('aria-disabled');
    showNotice(`Cancel failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

ui.workflow.addEventListener('change', showParams);
ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (current) return;
  start(readRequest(), ui.token.value.trim());
});
// Enter makes a new line in the query; Ctrl+Enter (⌘+Enter) runs it, as in most chat boxes.
ui.query.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.cancelButton.addEventListener('click', () => void cancel());
showParams();
