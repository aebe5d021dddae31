/**
 * What a report says about one ended run of a job, read from the database: the run, its job, and a line per VM from the
 * run's task tree (the tasks of kind "vm", with the warnings of every task below each one); for a VERIFY job, a line per
 * restore point verified (the tasks of kind "verify", with the verdict in their result).
 */
import type { Db } from "../db/prisma.js";
import type { RunStatus } from "../db/generated/enums.js";

export interface VmReport {
  /** null for a VM task recorded without one (never for backups; kept nullable for old rows). */
  uuid: string | null;
  name: string;
  status: RunStatus;
  /** The VM task's message when it did not succeed. */
  error: string | null;
  /** Warnings of the VM task and of every task below it, in tree order. */
  warnings: string[];
  sizeBytes: number;
  durationSeconds: number | null;
}

/** A restore point a VERIFY run read, and its verdict. */
export interface RestorePointReport {
  /** null when the task recorded none (never for verify tasks). */
  restorePointId: string | null;
  vmUuid: string | null;
  /** "verify <vm> <time> on <remote>": the task's name. */
  name: string;
  /** The task's status: SUCCESS (OK or REPAIRED), FAILURE (DAMAGED, or the verify could not finish), CANCELLED, ... */
  status: RunStatus;
  /** OK, DAMAGED or REPAIRED; null when the verify did not finish. */
  verdict: string | null;
  /** Why it failed (what is damaged) when it did not succeed. */
  error: string | null;
  warnings: string[];
  checkedBytes: number;
  /** How many problems the verify found. */
  problems: number;
  durationSeconds: number | null;
}

export interface RunReport {
  run: {
    id: string;
    status: RunStatus;
    error: string | null;
    trigger: string;
    startedAt: Date | null;
    endedAt: Date | null;
    durationSeconds: number | null;
    transferredBytes: number;
    vmsTotal: number;
    vmsSucceeded: number;
    vmsFailed: number;
    /** Warnings of the root task (remotes skipped, VMs left out by tag, ...). */
    warnings: string[];
  };
  job: { id: string; name: string; mode: string };
  vms: VmReport[];
  /** VERIFY jobs: each restore point verified, in task order (empty for the other modes). */
  restorePoints: RestorePointReport[];
  /** The run's page on the dashboard. */
  url: string;
}

const seconds = (from: Date | null, to: Date | null) =>
  from && to ? Math.max(0, Math.round((to.getTime() - from.getTime()) / 1000)) : null;

/** The report of a run, or null when the run or its job is gone. */
export async function loadRunReport(db: Db, runId: string, publicUrl: string): Promise<RunReport | null> {
  const run = await db.run.findUnique({
    where: { id: runId },
    include: {
      job: { select: { id: true, name: true, mode: true } },
      tasks: {
        orderBy: { position: "asc" },
        select: {
          id: true,
          parentId: true,
          kind: true,
          name: true,
          status: true,
          message: true,
          warnings: true,
          sizeBytes: true,
          startedAt: true,
          endedAt: true,
          vmUuid: true,
          result: true,
        },
      },
    },
  });
  if (!run || !run.job) return null;
  const children = new Map<string | null, typeof run.tasks>();
  for (const task of run.tasks) children.set(task.parentId, [...(children.get(task.parentId) ?? []), task]);
  const warningsBelow = (taskId: string): string[] =>
    (children.get(taskId) ?? []).flatMap((child) => [...child.warnings, ...warningsBelow(child.id)]);
  const root = run.tasks.find((task) => task.parentId === null);
  const vms = run.tasks
    .filter((task) => task.kind === "vm")
    .map(
      (task): VmReport => ({
        uuid: task.vmUuid,
        name: task.name,
        status: task.status,
        error: task.status === "SUCCESS" ? null : task.message,
        warnings: [...task.warnings, ...warningsBelow(task.id)],
        sizeBytes: Number(task.sizeBytes ?? 0),
        durationSeconds: seconds(task.startedAt, task.endedAt),
      }),
    );
  const restorePoints = run.tasks
    .filter((task) => task.kind === "verify")
    .map((task): RestorePointReport => {
      const result = (task.result ?? {}) as { restorePointId?: unknown; status?: unknown; checkedBytes?: unknown; problems?: unknown };
      return {
        restorePointId: typeof result.restorePointId === "string" ? result.restorePointId : null,
        vmUuid: task.vmUuid,
        name: task.name,
        status: task.status,
        verdict: typeof result.status === "string" ? result.status : null,
        error: task.status === "SUCCESS" ? null : task.message,
        warnings: [...task.warnings, ...warningsBelow(task.id)],
        checkedBytes: typeof result.checkedBytes === "number" ? result.checkedBytes : Number(task.sizeBytes ?? 0),
        problems: Array.isArray(result.problems) ? result.problems.length : 0,
        durationSeconds: seconds(task.startedAt, task.endedAt),
      };
    });
  return {
    run: {
      id: run.id,
      status: run.status,
      error: run.error,
      trigger: run.trigger,
      startedAt: run.startedAt,
      endedAt: run.endedAt,
      durationSeconds: seconds(run.startedAt, run.endedAt),
      transferredBytes: Number(run.transferredBytes),
      vmsTotal: run.vmsTotal,
      vmsSucceeded: run.vmsSucceeded,
      vmsFailed: run.vmsFailed,
      warnings: root?.warnings ?? [],
    },
    job: run.job,
    vms,
    restorePoints,
    url: `${publicUrl}/runs/${run.id}`,
  };
}
