/**
 * Retention of run history: runs older than HISTORY_RETENTION_DAYS are deleted with their task trees, so that years of
 * schedules do not grow the Run and Task tables forever (each run holds about ten tasks).
 *
 * Kept whatever their age: runs that have not ended (PENDING, RUNNING: their worker still writes to them), and runs a
 * restore point still refers to (the restore point's "made by" link; the foreign key would only null it). A run is deleted
 * once the last restore point it made is gone.
 */
import { systemClock, type Clock } from "../domain/clock.js";
import { startPeriodic } from "../domain/periodic.js";
import type { Db } from "../db/prisma.js";
import type { Logger } from "../log.js";
import { deleteRuns, deleteTasksOfRuns, expiredRuns } from "./runs.sql.js";

export interface HistoryRetentionOptions {
  /** Runs created more than this many days ago are deleted; 0 keeps history forever. */
  retentionDays: number;
  /** Where "now" is read and the sweep's timer set. @default systemClock */
  clock?: Clock;
  /** Time between two sweeps. @default 6 hours */
  sweepIntervalMs?: number;
  /** Runs deleted per transaction (with their tasks, about ten each). @default 500 */
  sweepBatch?: number;
}

export interface SweepResult {
  runs: number;
  tasks: number;
}

export class HistoryRetention {
  private readonly clock: Clock;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly options: HistoryRetentionOptions,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /**
   * Deletes the expired runs, oldest first, in batches: each batch is one short transaction that locks its runs (SKIP
   * LOCKED: several processes sweeping at once take different runs, and a run another transaction holds is left for the next
   * sweep), deletes their tasks, then the runs, rechecking the conditions on the locked rows.
   */
  async sweep(now: Date = this.clock.now(), signal?: AbortSignal): Promise<SweepResult> {
    const result = { runs: 0, tasks: 0 };
    if (this.options.retentionDays <= 0) return result;
    const cutoff = new Date(now.getTime() - this.options.retentionDays * 86_400_000);
    const batch = this.options.sweepBatch ?? 500;
    while (!signal?.aborted) {
      const done = await this.db.$transaction(async (tx) => {
        const ids = (await tx.$queryRaw<{ id: string }[]>(expiredRuns(cutoff, batch))).map((row) => row.id);
        if (ids.length === 0) return { runs: 0, tasks: 0, found: 0 };
        const tasks = await tx.$executeRaw(deleteTasksOfRuns(ids));
        const runs = await tx.$executeRaw(deleteRuns(ids, cutoff));
        return { runs, tasks, found: ids.length };
      });
      result.runs += done.runs;
      result.tasks += done.tasks;
      if (done.found < batch) break;
    }
    return result;
  }

  /** Sweeps now, then every few hours, until `stop()`, which waits for a sweep under way (cut short between two batches). */
  start(): { stop(): Promise<void> } {
    if (this.options.retentionDays <= 0) return { stop: async () => undefined };
    return startPeriodic(this.clock, this.options.sweepIntervalMs ?? 6 * 3600_000, (signal) =>
      this.sweep(this.clock.now(), signal)
        .then(({ runs, tasks }) => {
          if (runs > 0) this.log.info({ runs, tasks, retentionDays: this.options.retentionDays }, "deleted old run history");
        })
        .catch((error: unknown) => this.log.warn({ err: error }, "run history retention sweep failed; the next one retries")),
    );
  }
}
