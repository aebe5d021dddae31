/**
 * Runs every stop, in order, even when one of them throws (a failed disconnect must not leave a server running), then
 * throws the first failure. Undefined entries (what a failed setup never started) are skipped.
 *
 *   afterAll(() => stopAll(() => db?.$disconnect(), () => server?.stop()));
 */
export async function stopAll(...stops: (() => unknown)[]): Promise<void> {
  const failures: unknown[] = [];
  for (const stop of stops) {
    try {
      await stop();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, `${failures.length} stops failed`);
}

/**
 * Like Promise.all for what a setup starts, but waits until every start has settled before it throws, so that each start
 * that succeeded has assigned what it started (and the afterAll stops it) even when another one failed:
 *
 *   await settleAll([startTestCairn().then((s) => (server = s)), startS3rver().then((p) => (s3 = p))]);
 */
export async function settleAll(starts: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(starts)).find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed) throw failed.reason;
}
