/**
 * Where time is read and waited for. Production uses {@link systemClock}; tests pass a clock they move by hand
 * (`test/support/manual-clock.ts`), so that what happens "at 03:00" or "after the next tick" is asserted without waiting for it
 * or depending on how busy the machine is.
 */
export interface Clock {
  now(): Date;
  /**
   * Calls `callback` once, `ms` from now (0 or less: as soon as possible); returns a function that cancels it. A callback may
   * return a promise: a manual clock waits for it before it says its time moved.
   */
  setTimeout(callback: () => unknown, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => new Date(),
  setTimeout(callback, ms) {
    const timer = setTimeout(() => void callback(), Math.max(0, ms));
    return () => clearTimeout(timer);
  },
};
