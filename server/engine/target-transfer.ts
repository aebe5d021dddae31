/**
 * Streams one export to every live target at once, one fork each, under a `transfer` task per target. A target whose write
 * fails is dropped (its task fails, the VM gets a warning) and the others go on; the caller learns which survived.
 */
import type { Readable } from "node:stream";
import { pipeline } from "node:stream";
import { byteMeter } from "./byte-meter.js";
import { forkStream } from "./fork-stream.js";
import type { TaskContext } from "./task-context.js";

export interface LiveTarget {
  name: string;
  /** Writes the fork where it belongs; resolves with the bytes written. */
  write(stream: Readable, signal: AbortSignal): Promise<number>;
  alive: boolean;
  error?: unknown;
}

export async function transferToTargets(
  source: Readable,
  targets: LiveTarget[],
  options: { vmTask: TaskContext; what: string; expectedBytes: number; signal: AbortSignal },
): Promise<void> {
  const live = targets.filter((t) => t.alive);
  const forks = forkStream(source, live.length);
  await Promise.all(
    live.map(async (target, i) => {
      const fork = forks[i];
      const task = await options.vmTask.child("transfer", `${options.what} to ${target.name}`);
      const meter = byteMeter((written) => task.progress(options.expectedBytes > 0 ? Math.min(0.99, written / options.expectedBytes) : 0, written), 0);
      // pipeline (not pipe) so that a cut fork or a failed source errors the writer's stream instead of leaving it waiting.
      pipeline(fork.stream, meter, () => undefined);
      try {
        const bytes = await target.write(meter, options.signal);
        await task.succeed({ bytes }, bytes);
      } catch (error) {
        fork.cut(error);
        target.alive = false;
        target.error = error;
        await task.fail(error);
        if (!options.signal.aborted) await options.vmTask.warn(`${target.name} dropped: ${(error as Error).message}`);
      }
    }),
  );
}
