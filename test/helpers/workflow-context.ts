import pino from 'pino';
import { ScriptedModel } from '../../server/models/scripted-model';
import type { Model } from '../../server/models/model';
import type { StepDraft, WorkflowContext } from '../../server/workflows/workflow';

export interface RecordingContext extends WorkflowContext {
  /** Every emitted step, in emit order. */
  steps: StepDraft[];
  controller: AbortController;
}

export interface RecordingContextOptions {
  /** Defaults to a `ScriptedModel` with no token delay. */
  model?: Model;
  /** Runs inside `emit`, after the step is recorded (e.g. to abort at a given step). */
  onEmit?: (step: StepDraft, ctx: RecordingContext) => void;
}

/** A workflow context whose `emit` records steps in memory, for driving workflows in tests. */
export function recordingContext(options: RecordingContextOptions = {}): RecordingContext {
  const controller = new AbortController();
  const ctx: RecordingContext = {
    sessionId: '00000000-0000-4000-8000-000000000000',
    signal: controller.signal,
    model: options.model ?? new ScriptedModel({ tokenDelayMs: 0 }),
    log: pino({ level: 'silent' }),
    steps: [],
    controller,
    async emit(step) {
      ctx.steps.push(step);
      options.onEmit?.(step, ctx);
    },
  };
  return ctx;
}
