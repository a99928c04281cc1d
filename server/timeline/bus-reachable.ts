import type { TimelineBus } from './bus';

/** Whether the bus answers a ping within `timeoutMs` (readiness, the `timeline_bus_up` gauge). */
export async function busReachable(bus: TimelineBus, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([bus.ping().then(() => true), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
