import { z } from 'zod';
import type { ModelReply, ModelRequest, ModelUsage } from '../models/model';
import { capitalize } from '../utils/capitalize';
import { TokenCoalescer } from './token-coalescer';
import type { Workflow, WorkflowContext, WorkflowInput } from './workflow';

export const ROUTES = ['writer', 'researcher', 'discussion'] as const;
export type Route = (typeof ROUTES)[number];

export interface RouteDecision {
  route: Route;
  reason: string;
  confidence: number;
}

export interface AgentsParams {
  /** Skips the router's model call and uses this route. */
  route?: Route;
  /** Discussion turns in total, the two speakers alternating. */
  turns: number;
}

export interface AgentsResult {
  route: Route;
  answer: string;
  /** Summed over every model call of the run. */
  usage: ModelUsage;
}

export interface AgentsWorkflowOptions {
  /** How often streamed text is emitted as `AGENT_TOKEN`, in milliseconds. Defaults to `50`. */
  tokenIntervalMs?: number;
}

const agentsParams = z
  .strictObject({
    route: z.enum(ROUTES).optional(),
    turns: z.int().min(2).max(10).default(4),
  })
  // `params` may be left out of POST /execute.
  .prefault({});

/** The default workflow: a router hands the query to a writer, a researcher or a discussion. */
export function createAgentsWorkflow(options: AgentsWorkflowOptions = {}): Workflow<AgentsParams> {
  return {
    name: 'agents',
    description: 'A router hands the query to a writer, a researcher or a two-agent discussion.',
    params: agentsParams,
    async run(input, ctx): Promise<AgentsResult> {
      const run = new AgentsRun(input, ctx, options.tokenIntervalMs ?? 50);
      const { decision, usage } = await run.decideRoute();
      await ctx.emit({
        type: 'ROUTER_THOUGHT',
        status: 'SUCCESS',
        message: `Router chose ${decision.route} (confidence ${decision.confidence})`,
        agent_name: 'router',
        details: { ...decision, ...(usage && { usage }) },
      });
      const answer = await run.answer(decision.route);
      return { route: decision.route, answer, usage: run.usage };
    },
  };
}

/**
 * Reads the router's reply: a JSON object, possibly wrapped in prose or a code fence.
 * Returns `undefined` when no valid decision is in it.
 */
export function parseRouteDecision(text: string): RouteDecision | undefined {
  const json = /\{[\s\S]*\}/.exec(text)?.[0];
  if (json === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  const parsed = decisionSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

const decisionSchema = z.object({
  route: z.string().transform((s) => s.trim().toLowerCase()).pipe(z.enum(ROUTES)),
  reason: z.string().catch('(no reason given)'),
  confidence: z.number().min(0).max(1).catch(0.5),
});

const FALLBACK: RouteDecision = {
  route: 'researcher',
  reason: 'The router reply held no valid decision; research is the safe default.',
  confidence: 0.2,
};

const ROUTER_SYSTEM = `You are the router of a small team of AI agents. Choose who handles the user's request:
- "writer": the user wants a piece of writing produced (a draft, an email, a story, a poem, an essay).
- "researcher": the user wants facts, an explanation, or an answer to a question.
- "discussion": the request weighs options or opinions (a comparison, a decision, pros and cons), best served by two agents debating it.
Reply with only a JSON object, no other text: {"route": "writer" | "researcher" | "discussion", "reason": "<one short sentence>", "confidence": <a number from 0 to 1>}`;

const WRITER_SYSTEM = `You are the writer on a small team of AI agents. Write what the user asks for: clear, well structured and ready to use. Reply with the piece itself, without preamble.`;

const RESEARCHER_SYSTEM = `You are the researcher on a small team of AI agents. Answer the user's question accurately and concisely, using the search findings where they help. Say plainly what you are unsure of.`;

const SPEAKERS = {
  advocate: `You are the advocate in a two-agent discussion. Make the strongest case in favour of the proposal or option under discussion, and answer the critic's latest point directly. Keep your turn under 120 words.`,
  critic: `You are the critic in a two-agent discussion. Challenge the advocate's points: raise risks, costs and alternatives, and answer the advocate's latest point directly. Keep your turn under 120 words.`,
} as const;

const MODERATOR_SYSTEM = `You are the moderator of a two-agent discussion. Summarise it into a balanced answer to the user's question: the key arguments on each side, then a clear recommendation.`;

/** One run of the workflow: its input, context and the usage summed over its model calls. */
class AgentsRun {
  readonly usage: ModelUsage = { input_tokens: 0, output_tokens: 0 };
  private readonly query: string;
  /** The query with the request's context items, as the agents see it. */
  private readonly prompt: string;
  private readonly params: AgentsParams;

  constructor(
    input: WorkflowInput<AgentsParams>,
    private readonly ctx: WorkflowContext,
    private readonly tokenIntervalMs: number,
  ) {
    this.query = input.query;
    this.prompt = input.query + contextBlock(input.context);
    this.params = input.params;
  }

  /** The route, and the usage of the router's model call when there was one. */
  async decideRoute(): Promise<{ decision: RouteDecision; usage?: ModelUsage }> {
    if (this.params.route) {
      return { decision: { route: this.params.route, reason: 'forced by params.route', confidence: 1 } };
    }
    const reply = await this.ctx.model.stream(
      {
        purpose: 'route',
        system: ROUTER_SYSTEM,
        messages: [{ role: 'user', content: this.prompt }],
        maxTokens: 200,
      },
      { signal: this.ctx.signal },
    );
    this.addUsage(reply.usage);
    this.ctx.signal.throwIfAborted();
    const decision = parseRouteDecision(reply.text);
    if (!decision) {
      this.ctx.log.warn({ session_id: this.ctx.sessionId, reply: reply.text }, 'unparsable router reply');
    }
    return { decision: decision ?? FALLBACK, usage: reply.usage };
  }

  answer(route: Route): Promise<string> {
    switch (route) {
      case 'writer':
        return this.writer();
      case 'researcher':
        return this.researcher();
      case 'discussion':
        return this.discussion();
    }
  }

  private async writer(): Promise<string> {
    await this.start('writer');
    return this.complete('writer', {
      purpose: 'writer',
      system: WRITER_SYSTEM,
      messages: [{ role: 'user', content: this.prompt }],
      maxTokens: 1024,
    });
  }

  private async researcher(): Promise<string> {
    await this.start('researcher');
    const findings = searchStub(this.query);
    await this.ctx.emit({
      type: 'TOOL_CALL',
      status: 'SUCCESS',
      message: `Researcher searched for "${shorten(this.query)}"`,
      agent_name: 'researcher',
      details: { tool: 'search', input: { query: this.query }, output: findings },
    });
    return this.complete('researcher', {
      purpose: 'researcher',
      system: RESEARCHER_SYSTEM,
      messages: [
        {
          role: 'user',
          content: `Question: ${this.prompt}\n\nSearch findings:\n${findings.map((f) => `- ${f}`).join('\n')}`,
        },
      ],
      maxTokens: 1024,
    });
  }

  private async discussion(): Promise<string> {
    const turns: string[] = [];
    for (let turn = 1; turn <= this.params.turns; turn++) {
      const speaker = turn % 2 === 1 ? 'advocate' : 'critic';
      await this.ctx.emit({
        type: 'AGENT_START',
        status: 'IN_PROGRESS',
        message: `${capitalize(speaker)} speaks (turn ${turn} of ${this.params.turns})`,
        agent_name: speaker,
        details: { turn },
      });
      const { text, usage } = await this.streamReply(speaker, {
        purpose: speaker,
        system: SPEAKERS[speaker],
        messages: [
          {
            role: 'user',
            content:
              `Topic: ${this.prompt}\n\nDiscussion so far:\n${turns.join('\n\n') || '(nothing yet: you open it)'}\n\n` +
              `Give your turn ${turn} of ${this.params.turns}.`,
          },
        ],
        maxTokens: 400,
      });
      turns.push(`${capitalize(speaker)}: ${text}`);
      await this.ctx.emit({
        type: 'AGENT_MESSAGE',
        status: 'SUCCESS',
        message: `${capitalize(speaker)} finished turn ${turn} of ${this.params.turns}`,
        agent_name: speaker,
        details: { turn, text, usage },
      });
    }
    await this.start('moderator');
    return this.complete('moderator', {
      purpose: 'moderator',
      system: MODERATOR_SYSTEM,
      messages: [{ role: 'user', content: `Topic: ${this.prompt}\n\nTranscript:\n${turns.join('\n\n')}` }],
      maxTokens: 800,
    });
  }

  private start(agent: string): Promise<void> {
    return this.ctx.emit({
      type: 'AGENT_START',
      status: 'IN_PROGRESS',
      message: `${capitalize(agent)} started`,
      agent_name: agent,
    });
  }

  /** Streams the agent's answer, then emits `AGENT_COMPLETE` with it. */
  private async complete(agent: string, request: ModelRequest): Promise<string> {
    const { text, usage } = await this.streamReply(agent, request);
    await this.ctx.emit({
      type: 'AGENT_COMPLETE',
      status: 'SUCCESS',
      message: `${capitalize(agent)} finished (${usage.output_tokens} tokens)`,
      agent_name: agent,
      details: { text, usage },
    });
    return text;
  }

  /** One model call whose text is streamed as coalesced `AGENT_TOKEN` steps. */
  private async streamReply(agent: string, request: ModelRequest): Promise<ModelReply> {
    const tokens = new TokenCoalescer(this.ctx, agent, { intervalMs: this.tokenIntervalMs });
    try {
      const reply = await this.ctx.model.stream(request, {
        signal: this.ctx.signal,
        onText: (delta) => tokens.push(delta),
      });
      await tokens.flush();
      this.addUsage(reply.usage);
      // The model may have finished just as the run was cancelled: go no further.
      this.ctx.signal.throwIfAborted();
      return reply;
    } finally {
      tokens.discard();
    }
  }

  private addUsage(usage: ModelUsage): void {
    this.usage.input_tokens += usage.input_tokens;
    this.usage.output_tokens += usage.output_tokens;
  }
}

/**
 * There is no search backend (the service needs no network), so the tool only frames the
 * question; the findings say so, which keeps a real model from trusting invented sources.
 */
function searchStub(query: string): string[] {
  const terms = [...new Set(query.toLowerCase().match(/[a-z0-9][a-z0-9-]{3,}/g) ?? [])].slice(0, 5);
  return [
    `Key terms: ${terms.join(', ') || 'none found'}.`,
    'No live search backend is configured: rely on well-established knowledge and flag anything that needs checking.',
    `Useful angles: definitions, trade-offs, and current practice around ${terms[0] ?? 'the topic'}.`,
  ];
}

function contextBlock(context: WorkflowInput<unknown>['context']): string {
  if (context.length === 0) return '';
  return `\n\nContext:\n${context.map((item) => `- ${JSON.stringify(item)}`).join('\n')}`;
}


function shorten(text: string): string {
  const line = text.split('\n')[0];
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}
