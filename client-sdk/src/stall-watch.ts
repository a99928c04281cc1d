/** Notices a connection that went silent. */
export interface StallWatch {
  /** Bytes arrived: the silence starts again from now. */
  alive(): void;
  stop(): void;
}

/**
 * Calls `onStall` once `timeoutMs` pass without `alive()` (`null`: never). A deadline checked
 * when the timer fires, not a timer re-armed per chunk: a busy stream costs one `Date.now()`
 * a chunk.
 */
export function watchForStall(timeoutMs: number | null, onStall: () => void): StallWatch {
  if (timeoutMs === null) return { alive: () => undefined, stop: () => undefined };
  let lastAliveAt = Date.now();
  let timer: ReturnType<typeof setTimeout>;
  const wait = (ms: number) => {
    timer = setTimeout(() => {
      const silentMs = Date.now() - lastAliveAt;
      if (silentMs >= timeoutMs) onStall();
      else wait(timeoutMs - silentMs);
    }, ms);
  };
  wait(timeoutMs);
  return {
    alive: () => {
      lastAliveAt = Date.now();
    },
    stop: () => clearTimeout(timer),
  };
}
