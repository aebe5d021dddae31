/**
 * The SQL of the run machinery that Prisma cannot express: row locks, and conditional updates stamped with the database's
 * `now()` (every process compares heartbeats against the same clock, whatever its own clock says). Values are always bound.
 */
import type { SkipReason } from "../db/generated/enums.js";
import { Prisma } from "../db/prisma.js";

/**
 * The database's clock in UTC, as Prisma stores DateTime (timestamp(3) without time zone, UTC): plain `now()` would be
 * converted with the session's TimeZone.
 */
const UTC_NOW = Prisma.sql`timezone('UTC', now())`;

/** Locks a job's row until the end of the transaction: launches of one job are serialised here. */
export function lockJob(jobId: string) {
  return Prisma.sql`SELECT id, enabled FROM "Job" WHERE id = ${jobId}::uuid FOR UPDATE`;
}

/** PENDING -> RUNNING for this worker; no row when the run was cancelled, or claimed by another worker. */
export function claimRun(runId: string, workerId: string) {
  return Prisma.sql`
    UPDATE "Run" SET status = 'RUNNING', "workerId" = ${workerId}, "startedAt" = ${UTC_NOW}, "heartbeatAt" = ${UTC_NOW}
    WHERE id = ${runId}::uuid AND status = 'PENDING'
    RETURNING id`;
}

/** Heartbeat of a run this worker holds; no row when the run is no longer ours (a sweeper interrupted it). */
export function heartbeatRun(runId: string, workerId: string) {
  return Prisma.sql`
    UPDATE "Run" SET "heartbeatAt" = ${UTC_NOW}
    WHERE id = ${runId}::uuid AND status = 'RUNNING' AND "workerId" = ${workerId}
    RETURNING "cancelRequestedAt"`;
}

/** Ends a run this worker holds; no row when it was no longer ours. `skipReason` goes with a SKIPPED status only. */
export function endRun(
  runId: string,
  workerId: string,
  status: "SUCCESS" | "FAILURE" | "SKIPPED" | "CANCELLED" | "INTERRUPTED",
  error: string | null,
  skipReason: SkipReason | null = null,
) {
  return Prisma.sql`
    UPDATE "Run" SET status = ${status}::"RunStatus", "endedAt" = ${UTC_NOW}, progress = 1, error = ${error}, "skipReason" = ${skipReason}::"SkipReason"
    WHERE id = ${runId}::uuid AND status = 'RUNNING' AND "workerId" = ${workerId}
    RETURNING id, "jobId"`;
}

export interface InterruptedRunRow {
  id: string;
  jobId: string | null;
  kind: string;
  workerId: string | null;
  heartbeatAt: Date | null;
  startedAt: Date | null;
}

/**
 * RUNNING -> INTERRUPTED for the runs given, still held by the worker we saw (so a run that moved on is left alone).
 * `error` gets the run's last heartbeat (or start) as the time its process stopped.
 */
export function interruptRuns(runs: { id: string; workerId: string | null }[], messageBefore: string, messageAfter: string) {
  const ids = runs.map((r) => r.id);
  const workers = runs.map((r) => r.workerId ?? "");
  return Prisma.sql`
    UPDATE "Run" r SET status = 'INTERRUPTED', "endedAt" = ${UTC_NOW},
      error = ${messageBefore} || to_char(COALESCE(r."heartbeatAt", r."startedAt", ${UTC_NOW}), 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ${messageAfter}
    FROM unnest(${ids}::uuid[], ${workers}::text[]) AS t(id, worker)
    WHERE r.id = t.id AND r.status = 'RUNNING' AND COALESCE(r."workerId", '') = t.worker
    RETURNING r.id, r."jobId", r.kind::text AS kind, r."workerId", r."heartbeatAt", r."startedAt"`;
}

/** RUNNING runs whose heartbeat is older than `seconds` by the database clock (or that never had one). */
export function staleRuns(seconds: number) {
  return Prisma.sql`
    SELECT id, "workerId" FROM "Run"
    WHERE status = 'RUNNING' AND COALESCE("heartbeatAt", "startedAt", "createdAt") < ${UTC_NOW} - make_interval(secs => ${seconds})`;
}

/** PENDING runs created more than `seconds` ago: their queue job should have been taken by now. */
export function oldPendingRuns(seconds: number) {
  return Prisma.sql`
    SELECT id FROM "Run" WHERE status = 'PENDING' AND "createdAt" < ${UTC_NOW} - make_interval(secs => ${seconds}) ORDER BY "createdAt"`;
}

/** Tasks of interrupted runs that were still running. */
export function interruptTasks(runIds: string[], message: string) {
  return Prisma.sql`
    UPDATE "Task" SET status = 'INTERRUPTED', "endedAt" = ${UTC_NOW}, message = COALESCE(message, ${message})
    WHERE "runId" = ANY(${runIds}::uuid[]) AND status = 'RUNNING'`;
}

/** The database's clock. */
export function databaseNow() {
  return Prisma.sql`SELECT now() AS now`;
}

/** An instant as Prisma stores DateTime (UTC, without time zone), whatever the session's TimeZone. */
const utc = (date: Date) => Prisma.sql`(${date.toISOString()}::timestamptz AT TIME ZONE 'UTC')`;

/** Run statuses that are final: history retention deletes only those. */
const ENDED_STATUSES = Prisma.sql`('SUCCESS', 'FAILURE', 'SKIPPED', 'CANCELLED', 'INTERRUPTED')`;

/**
 * Up to `limit` ended runs created before `cutoff` that no restore point refers to, oldest first, locked for the
 * transaction; SKIP LOCKED leaves the runs another transaction holds (a concurrent sweep, a restore point being written).
 */
export function expiredRuns(cutoff: Date, limit: number) {
  return Prisma.sql`
    SELECT r.id FROM "Run" r
    WHERE r."createdAt" < ${utc(cutoff)} AND r.status IN ${ENDED_STATUSES}
      AND NOT EXISTS (SELECT 1 FROM "RestorePoint" p WHERE p."runId" = r.id)
    ORDER BY r."createdAt"
    LIMIT ${limit}
    FOR UPDATE OF r SKIP LOCKED`;
}

/** The task trees of these runs. */
export function deleteTasksOfRuns(runIds: string[]) {
  return Prisma.sql`DELETE FROM "Task" WHERE "runId" = ANY(${runIds}::uuid[])`;
}

/** These runs, with expiredRuns' conditions checked again on the locked rows. */
export function deleteRuns(runIds: string[], cutoff: Date) {
  return Prisma.sql`
    DELETE FROM "Run" r
    WHERE r.id = ANY(${runIds}::uuid[]) AND r."createdAt" < ${utc(cutoff)} AND r.status IN ${ENDED_STATUSES}
      AND NOT EXISTS (SELECT 1 FROM "RestorePoint" p WHERE p."runId" = r.id)`;
}
