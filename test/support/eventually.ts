/**
 * Waits for something that happens in the background: calls `check` until it returns without throwing (an `expect` inside
 * it, or a predicate returning true) and resolves with its value. The timeout only bounds a hang: it is generous, and a
 * test never depends on how fast the machine is. On timeout it fails with `what` and the last failure seen.
 *
 *   const run = await eventually("the run to finish", async () => {
 *     const run = await db.run.findUniqueOrThrow({ where: { id } });
 *     expect(run.status).toBe("SUCCESS");
 *     return run;
 *   });
 */
export interface EventuallyOptions {
  /** @default 30000 */
  timeoutMs?: number;
  /** Pause between two checks. @default 50 */
  intervalMs?: number;
  /** A failure that waiting cannot cure (the process exited): fail at once with it instead of polling on. */
  stopWhen?: (error: unknown) => boolean;
}

export async function eventually<T>(
  what: string,
  check: () => T | Promise<T>,
  options: EventuallyOptions = {},
): Promise<Exclude<T, false>> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let attempt = 1; ; attempt++) {
    try {
      const value = await check();
      if (value !== false) return value as Exclude<T, false>;
      last = new Error("the check returned false");
    } catch (error) {
      if (options.stopWhen?.(error)) throw error;
      last = error;
    }
    if (Date.now() >= deadline) {
      const reason = last instanceof Error ? last.message : String(last);
      throw new Error(`waited ${timeoutMs} ms (${attempt} checks) for ${what}; last: ${reason}`, { cause: last });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
