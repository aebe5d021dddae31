/**
 * Streams one export to every live target at once, one fork each, under a `transfer` task per target. A target whose write
 * fails is dropped (its task fails, the VM gets a warning) and the others go on; the caller learns which survived. When the
 * run is stopped, transfer tasks are left to the run machinery, which ends them with the run's status.
 */
import { chainStreams } from "../../streams/stream-chain.js";
import type { Readable } from "node:stream";

import { byteMeter } from "../../streams/byte-meter.js";
import { forkStream } from "../../streams/fork-stream.js";
import type { TaskContext } from "../task-context.js";

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
      chainStreams(fork.stream, meter);
      try {
        const bytes = await target.write(meter, options.signal);
        await task.succeed({ bytes }, bytes);
      } catch (error) {
        fork.cut(error);
        target.alive = false;
        target.error = error;
        // A stopped run (cancel, timeout, shutdown) is no failure of this transfer: the task is left open and the run
        // machinery ends it with the run's own status and message (CANCELLED "Cancelled by a user.", ...).
        if (options.signal.aborted) return;
        await task.fail(error);
        await options.vmTask.warn(`${target.name} dropped: ${(error as Error).message}`);
      }
    }),
  );
}
