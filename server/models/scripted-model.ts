import { delay } from '../utils/delay';
import type { Model, ModelCallOptions, ModelReply, ModelRequest } from './model';

export interface ScriptedModelOptions {
  /** Delay before each streamed token, in milliseconds. Defaults to `15`. */
  tokenDelayMs?: number;
}

/**
 * An offline model that streams deterministic text: the service runs and demos with no API
 * key and no network. It understands nothing; it echoes the first line of the conversation
 * as the topic so the demo reads sensibly, and routes with keyword heuristics.
 */
export class ScriptedModel implements Model {
  readonly name = 'scripted';
  private readonly tokenDelayMs: number;

  constructor(options: ScriptedModelOptions = {}) {
    this.tokenDelayMs = options.tokenDelayMs ?? 15;
  }

  async stream(request: ModelRequest, options: ModelCallOptions): Promise<ModelReply> {
    const { signal, onText } = options;
    signal.throwIfAborted();
    const tokens = tokenize(scriptFor(request)).slice(0, request.maxTokens);
    for (const token of tokens) {
      await delay(this.tokenDelayMs, signal);
      onText?.(token);
    }
    const prompt = [request.system, ...request.messages.map((m) => m.content)].join(' ');
    return {
      text: tokens.join(''),
      usage: { input_tokens: tokenize(prompt).length, output_tokens: tokens.length },
    };
  }
}

/** Word-ish chunks, each with its leading whitespace, so they concatenate back to the text. */
function tokenize(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}


function scriptFor(request: ModelRequest): string {
  const users = request.messages.filter((m) => m.role === 'user');
  if (request.purpose === 'route') {
    return JSON.stringify(routeFor(users.at(-1)?.content ?? ''));
  }
  const topic = topicOf(users[0]?.content ?? '');
  const variants = PROSE[request.purpose] ?? PROSE.default;
  // Vary the wording with the whole request, so successive discussion turns differ.
  const pick = variants[hash(JSON.stringify(request)) % variants.length];
  return pick(topic);
}

type Route = 'writer' | 'researcher' | 'discussion';

function routeFor(message: string): { route: Route; reason: string; confidence: number } {
  const writing = /\b(write|writing|draft|poem|story|email|essay)\b/i.exec(message);
  if (writing) {
    return {
      route: 'writer',
      reason: `The request asks for a piece of writing ("${writing[1]}").`,
      confidence: 0.9,
    };
  }
  const debate = /\b(debate|discuss|compare|versus|vs|pros and cons|should we)\b/i.exec(message);
  if (debate) {
    return {
      route: 'discussion',
      reason: `The request weighs options ("${debate[1]}"), which suits a two-sided discussion.`,
      confidence: 0.85,
    };
  }
  return {
    route: 'researcher',
    reason: 'The request reads as a question that needs facts and an explanation.',
    confidence: 0.7,
  };
}

/** The first line, without a `Label:` prefix, shortened to a dozen words. */
function topicOf(content: string): string {
  const line = (content.split('\n').find((l) => l.trim() !== '') ?? 'the question').trim();
  const words = line.replace(/^[A-Za-z][\w ]{0,20}:\s*/, '').split(/\s+/);
  return words.length > 12 ? `${words.slice(0, 12).join(' ')}…` : words.join(' ');
}

/** FNV-1a: a stable, dependency-free string hash. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  }
  return h >>> 0;
}

type Template = (topic: string) => string;

const PROSE: Record<string, Template[]> & { default: Template[] } = {
  writer: [
    (t) =>
      `Here is a first draft on "${t}". It opens with the point that matters most, then ` +
      `builds on it with one concrete example and a short, plain explanation. The tone stays ` +
      `warm and direct, and it closes with a single line the reader will remember.`,
    (t) =>
      `A short piece for "${t}": it starts with a clear hook, keeps every sentence doing ` +
      `one job, and ends on an invitation to act. Trim or extend the middle paragraph to fit ` +
      `the length you need.`,
  ],
  researcher: [
    (t) =>
      `On "${t}": the short answer depends on scale and constraints. The key terms are worth ` +
      `defining first, then the main trade-offs, then what current practice recommends. ` +
      `The search findings point the same way, though any figures should be checked against ` +
      `a primary source before relying on them.`,
    (t) =>
      `Looking into "${t}", three things stand out. The core idea is simpler than it first ` +
      `appears, the trade-offs are mostly about cost and complexity, and most teams start ` +
      `small and measure. Treat this as an overview rather than a final word.`,
  ],
  advocate: [
    (t) =>
      `I argue in favour on "${t}". The benefits arrive early, the risks can be contained ` +
      `with a small pilot, and waiting has its own cost. The critic's concerns are fair, ` +
      `but each has a practical mitigation.`,
    (t) =>
      `Building on my case for "${t}": the strongest evidence is that teams who tried it ` +
      `learned fast and kept their options open. A reversible first step beats an endless ` +
      `debate.`,
  ],
  critic: [
    (t) =>
      `I see real risks in "${t}". The costs are easy to underestimate, the benefits are ` +
      `uneven, and a simpler alternative may cover most of the need. Before committing, we ` +
      `should name what would make us stop.`,
    (t) =>
      `The advocate's pilot idea helps, but on "${t}" the hidden cost is maintenance over ` +
      `years, not the first month. I would want a clear success measure and an exit plan.`,
  ],
  moderator: [
    (t) =>
      `In summary on "${t}": the advocate showed clear early benefits and a low-risk way to ` +
      `start, while the critic raised long-term cost and simpler alternatives. The balanced ` +
      `recommendation is a small, reversible pilot with an agreed success measure and a date ` +
      `to decide.`,
  ],
  default: [
    (t) =>
      `About "${t}": this is a scripted reply from the offline model. It streams ` +
      `deterministic text so the service can run and demo without an API key.`,
  ],
};
