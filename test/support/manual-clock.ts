/**
 * A {@link Clock} that moves only when a test says so: `advance(ms)` runs, in time order, every timer that falls due on the
 * way (timers a callback sets are run too when they fall due before the end) and waits for what their callbacks return.
 */
import type { Clock } from "../../server/domain/clock.js";

export interface ManualClock extends Clock {
  /** Moves time forward by `ms`, running the timers that fall due; resolves when their callbacks have finished. */
  advance(ms: number): Promise<void>;
  /** Moves time to `at` (not backwards). */
  advanceTo(at: Date | number): Promise<void>;
  /** The due times of the pending timers, earliest first (ms since the epoch). */
  pending(): number[];
}

export function manualClock(start: Date | number): ManualClock {
  let now = new Date(start).getTime();
  let nextId = 0;
  const timers = new Map<number, { at: number; callback: () => unknown }>();

  const advanceTo = async (target: number) => {
    if (target < now)
      throw new Error(`a manual clock does not go back (now ${new Date(now).toISOString()}, asked ${new Date(target).toISOString()})`);
    for (;;) {
      const due = [...timers.values()].filter((t) => t.at <= target);
      if (due.length === 0) break;
      const at = Math.min(...due.map((t) => t.at));
      now = Math.max(now, at);
      // Every timer due at that instant runs together, as two processes' timers would.
      const batch = [...timers.entries()].filter(([, t]) => t.at === at);
      for (const [id] of batch) timers.delete(id);
      await Promise.all(batch.map(([, t]) => t.callback()));
    }
    now = target;
  };

  return {
    now: () => new Date(now),
    setTimeout(callback, ms) {
      const id = nextId++;
      timers.set(id, { at: now + Math.max(0, ms), callback });
      return () => timers.delete(id);
    },
    advance: (ms) => advanceTo(now + ms),
    advanceTo: (at) => advanceTo(new Date(at).getTime()),
    pending: () => [...timers.values()].map((t) => t.at).sort((a, b) => a - b),
  };
}
