/**
 * The SQL of run reports: the claim that makes exactly one Cairn process report a run, and the writes of delivery results to
 * a run that has ended (its worker no longer writes it). Values are always bound.
 */
import type { SkipReason } from "../db/generated/enums.js";
import { Prisma } from "../db/prisma.js";

const UTC_NOW = Prisma.sql`timezone('UTC', now())`;
const ENDED = Prisma.sql`('SUCCESS', 'FAILURE', 'SKIPPED', 'INTERRUPTED', 'CANCELLED')`;

export interface ClaimedRun {
  id: string;
  jobId: string | null;
  status: "SUCCESS" | "FAILURE" | "SKIPPED" | "INTERRUPTED" | "CANCELLED";
  error: string | null;
  /** Why a SKIPPED run was skipped (null otherwise, and for SKIPPED runs recorded before the column existed). */
  skipReason: SkipReason | null;
}

/**
 * Takes an ended backup run's report in hand: one row for exactly one caller, however many processes try at once (the row
 * lock of the UPDATE serialises them and the second sees `reportedAt` set); no row for a run still going, not a backup, or
 * already taken.
 */
export function claimReport(runId: string) {
  return Prisma.sql`
    UPDATE "Run" SET "reportedAt" = ${UTC_NOW}
    WHERE id = ${runId}::uuid AND kind = 'BACKUP' AND status IN ${ENDED} AND "reportedAt" IS NULL
    RETURNING id, "jobId", status::text AS status, error, "skipReason"::text AS "skipReason"`;
}

/** Ended backup runs nobody reported (an event missed while no process listened), ended at least `graceSeconds` ago. */
export function unreportedRuns(graceSeconds: number, limit: number) {
  return Prisma.sql`
    SELECT id FROM "Run"
    WHERE "reportedAt" IS NULL AND kind = 'BACKUP' AND status IN ${ENDED}
      AND COALESCE("endedAt", "createdAt") < ${UTC_NOW} - make_interval(secs => ${graceSeconds})
    ORDER BY "endedAt" LIMIT ${limit}`;
}

/** Records the deliveries under `params.reports`, keeping the run's other params. */
export function recordDeliveries(runId: string, reports: object) {
  return Prisma.sql`
    UPDATE "Run" SET params = COALESCE(params, '{}'::jsonb) || jsonb_build_object('reports', ${JSON.stringify(reports)}::jsonb)
    WHERE id = ${runId}::uuid`;
}

/** Adds warnings to the run's root task (the run has ended: no recorder writes it any more); returns the task, if any. */
export function warnRootTask(runId: string, warnings: string[]) {
  return Prisma.sql`
    UPDATE "Task" SET warnings = warnings || ${warnings}::text[]
    WHERE "runId" = ${runId}::uuid AND "parentId" IS NULL
    RETURNING id`;
}
