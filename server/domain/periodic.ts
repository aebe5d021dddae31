import type { Clock } from "./clock.js";

/**
 * Runs `work` now, then `intervalMs` after each run ends (two never overlap), until `stop()`, which aborts the signal given to
 * `work` (cut short where it checks it) and waits for a run under way. `work` handles its own errors: a failure must not end
 * the repetition.
 */
export function startPeriodic(clock: Clock, intervalMs: number, work: (signal: AbortSignal) => Promise<void>): { stop(): Promise<void> } {
  const stopping = new AbortController();
  let cancel: () => void = () => undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = (): Promise<void> => {
    if (stopping.signal.aborted) return running;
    running = work(stopping.signal).finally(() => {
      if (!stopping.signal.aborted) cancel = clock.setTimeout(tick, intervalMs);
    });
    return running;
  };
  cancel = clock.setTimeout(tick, 0);
  return {
    async stop() {
      stopping.abort();
      cancel();
      await running;
    },
  };
}
