/**
 * Polls `check` until it holds, for state that has no event to await (counters, registries).
 * Bounded: fails with `label` and the last value seen instead of hanging.
 */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 5000, intervalMs = 10, label = 'condition' }: { timeoutMs?: number; intervalMs?: number; label?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Resolves when `promise` does; rejects with `label` after `timeoutMs` so a stuck test fails. */
export function within<T>(promise: Promise<T>, timeoutMs: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
