/**
 * Creates runs and queues them: `runJob`, schedules (schedule-ticker.ts), restores and health checks all start here.
 *
 * One job never runs twice at once: a launch locks the job's row (`SELECT ... FOR UPDATE`), looks for a PENDING or RUNNING run
 * of the job and inserts the new run in the same transaction, so two launches of one job on two processes are serialised by
 * Postgres and the second one sees the first. The run is queued after the commit (a queue job never points at a run that does
 * not exist); if this process dies in between, run-recovery.ts queues the PENDING run again.
 */
import type { Db } from "../db/prisma.js";
import { Prisma } from "../db/prisma.js";
import type { Run } from "../db/prisma.js";
import { CairnError, ErrorCode, notFound } from "../errors.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import { validUuid } from "../domain/ids.js";
import type { RunQueue } from "./queue.js";
import { lockJob } from "./runs.sql.js";

export type TriggerKind = "SCHEDULE" | "MANUAL" | "API";

/** A run of a job (a backup). */
export interface JobRunRequest {
  jobId: string;
  scheduleId?: string | null;
  trigger: TriggerKind;
  /** For a scheduled run: the fire time it stands for (unique per schedule). */
  scheduledFor?: Date | null;
}

/** A run that is not a job's: a restore, a health check or a verify, with its parameters (never secrets). */
export interface StandaloneRunRequest {
  kind: "RESTORE" | "HEALTH_CHECK" | "VERIFY";
  params: Prisma.InputJsonValue;
  trigger?: TriggerKind;
  /** The job the run relates to, if any (it does not lock the job). */
  jobId?: string | null;
}

/** The text of a busy-job skip, for people: code decides on the run's `skipReason` (JOB_BUSY), never on this. */
export const BUSY_JOB_MESSAGE = "the previous run of this job was still running";

const ACTIVE = ["PENDING", "RUNNING"] as const;

export class RunLauncher {
  constructor(private readonly deps: { db: Db; events: EventBus; log: Logger; queue: RunQueue }) {}

  /**
   * Starts a run of a job now. Manual runs of a disabled job are allowed (schedules skip disabled jobs themselves).
   *
   * @returns the run, PENDING (or already RUNNING when a worker was quick)
   * @throws CairnError NOT_FOUND when the job does not exist (or the schedule is not one of its), CONFLICT ("job X is already running: run Y") when it has a
   *   PENDING or RUNNING run; `details.runId` is that run.
   */
  async launchRun(request: JobRunRequest): Promise<Run> {
    const run = await this.deps.db.$transaction(async (tx) => {
      const active = await lockAndFindActive(tx, request.jobId);
      if (request.scheduleId) {
        const scheduleId = validUuid(request.scheduleId, "schedule");
        const schedule = await tx.schedule.findFirst({ where: { id: scheduleId, jobId: request.jobId }, select: { id: true } });
        if (!schedule) throw notFound(`schedule of job ${request.jobId}`, scheduleId);
      }
      if (active) {
        // Named, not by uuid: the sentence is read by people; the ids are in details (extensions.runId) for a link.
        const job = await tx.job.findUnique({ where: { id: request.jobId }, select: { name: true } });
        const since = active.startedAt
          ? `running since ${utcMinute(active.startedAt)}`
          : `waiting to start since ${utcMinute(active.createdAt)}`;
        throw new CairnError(
          ErrorCode.Conflict,
          `Job "${job?.name ?? request.jobId}" is already running (its current run is ${since}): wait for it to end, or cancel that run.`,
          {
            jobId: request.jobId,
            runId: active.id,
          },
        );
      }
      return tx.run.create({
        data: {
          kind: "BACKUP",
          jobId: request.jobId,
          scheduleId: request.scheduleId ?? null,
          trigger: request.trigger,
          scheduledFor: request.scheduledFor ?? null,
        },
      });
    });
    return this.queued(run);
  }

  /**
   * Records the run a schedule stands for at `scheduledFor`. Exactly one call per (schedule, fire time) creates a run, however
   * many processes fire it: the others get `null`. When the job is busy, the run is recorded SKIPPED (`skipReason` JOB_BUSY,
   * the error saying BUSY_JOB_MESSAGE), as
   * Xen Orchestra does, so that a missed backup is visible in the history.
   */
  async launchScheduled(request: { jobId: string; scheduleId: string; scheduledFor: Date }): Promise<Run | null> {
    let run: Run;
    try {
      run = await this.deps.db.$transaction(async (tx) => {
        const active = await lockAndFindActive(tx, request.jobId);
        const base = {
          kind: "BACKUP" as const,
          jobId: request.jobId,
          scheduleId: request.scheduleId,
          trigger: "SCHEDULE" as const,
          scheduledFor: request.scheduledFor,
        };
        if (!active) return tx.run.create({ data: base });
        const now = new Date();
        return tx.run.create({
          data: {
            ...base,
            status: "SKIPPED",
            skipReason: "JOB_BUSY",
            startedAt: now,
            endedAt: now,
            progress: 1,
            error: `Skipped: ${BUSY_JOB_MESSAGE} (run ${active.id}).`,
          },
        });
      });
    } catch (error) {
      // The unique (scheduleId, scheduledFor): another process (or an earlier tick) already recorded this fire.
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002") return null;
      throw error;
    }
    if (run.status === "SKIPPED") {
      this.deps.log.warn(
        { runId: run.id, jobId: run.jobId, scheduleId: run.scheduleId },
        "scheduled run skipped: the job was still running",
      );
      await this.deps.events.publish({ type: "run", runId: run.id, jobId: run.jobId });
      return run;
    }
    return this.queued(run);
  }

  /** Starts a restore, health check or verify run (no job lock: several may run at once). */
  async launchStandalone(request: StandaloneRunRequest): Promise<Run> {
    const run = await this.deps.db.run.create({
      data: { kind: request.kind, params: request.params, trigger: request.trigger ?? "MANUAL", jobId: request.jobId ?? null },
    });
    return this.queued(run);
  }

  private async queued(run: Run): Promise<Run> {
    await this.deps.events.publish({ type: "run", runId: run.id, jobId: run.jobId });
    try {
      await this.deps.queue.enqueue(run.id);
    } catch (error) {
      // The run exists and is PENDING: the recovery sweeper queues it again; say so rather than fail a launch that happened.
      this.deps.log.error({ err: error, runId: run.id }, "could not queue the run; the recovery sweeper will queue it again");
    }
    return (await this.deps.db.run.findUnique({ where: { id: run.id } })) ?? run;
  }
}

async function lockAndFindActive(tx: Prisma.TransactionClient, jobId: string) {
  const jobs = await tx.$queryRaw<{ id: string }[]>(lockJob(validUuid(jobId, "job")));
  if (jobs.length === 0) throw notFound("job", jobId);
  return tx.run.findFirst({
    where: { jobId, status: { in: [...ACTIVE] } },
    orderBy: { createdAt: "desc" },
    select: { id: true, status: true, createdAt: true, startedAt: true },
  });
}

/** An instant as people read it in a message: "2026-12-03 13:02 UTC". */
function utcMinute(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
