/**
 * The runs of a MIRROR job (BACKUP runs of a job whose mode is MIRROR: backup-executor.ts hands them here): the restore
 * points of the job's source remote are copied to its remotes (the targets), touching no pool: off-site copies.
 *
 * Per VM (the job's `selection.vmUuids`, or every VM folder of the source when that list is empty), `concurrency` at once:
 * - a VM folder of the source that a backup is writing now is skipped this run, with a warning (the next run copies it);
 * - a restore lease is held on the source's folder while it is read, so no retention or merge there rewrites what is read;
 * - for each target: the points to copy (mirror-plan.ts: newer than the target's newest, oldest first, chains whole),
 *   copied and checked (copy-backup.ts), one `copy` task each with its bytes; then the target's VM folder is indexed (the
 *   copies are restore points of the target, with the mirror job's id and this run's id), and the schedule's retention
 *   (exportRetention and GFS) runs there, as after a FULL or DELTA backup;
 * - with the job's healthCheckSrUuid, the newest point copied is health-checked (once, on the first target that has it).
 *
 * Outcome as backup runs derive it: a VM fails when every target failed (a target that failed while another succeeded is a
 * warning); the run fails when a VM failed; SKIPPED when the source holds no VM to mirror.
 */
import type { Db } from "../../db/prisma.js";
import { hasGfs } from "../../domain/gfs-retention.js";
import type { JobSettings } from "../../domain/job-settings.js";
import { messageOf } from "../../errors.js";
import type { Logger } from "../../log.js";
import {
  type ScannedBackup,
  RepositoryError,
  RepositoryErrorReason,
  acquireVmLease,
  applyRetention,
  formatBackupTimestamp,
  liveClaims,
  scanRepository,
} from "../../repository/index.js";
import { VDIS_DIR, vmDir } from "../../repository/layout.js";
import { listVmUuids } from "../../repository/scanner.js";
import type { Remote } from "../../remotes/remote.js";
import { MANUAL_SCHEDULE_ID, type ScheduleRetention } from "../backup/backup-context.js";
import { indexRemote, unlistBeforeRemoving } from "../backup/remote-backup-index.js";
import { forEachLimited } from "../concurrency.js";
import { checkRestorePointHealth, type HealthCheckDeps } from "../health-check/health-check.js";
import type { RunContext, RunOutcome } from "../run-executor.js";
import type { RemoteRow, StoredRemotes } from "../stored-remotes.js";
import type { TaskContext } from "../task-context.js";
import { copyBackup } from "./copy-backup.js";
import { type MirrorPlan, planMirror } from "./mirror-plan.js";

export interface MirrorJobDeps {
  db: Db;
  remotes: StoredRemotes;
  log: Logger;
  /** Where a health check restores (the pools); absent: the job's healthCheckSrUuid is not applied, with a warning. */
  healthCheck?: HealthCheckDeps;
}

/** How long a VM's source folder is waited for while retention or a merge holds it, before it is skipped this run. */
const SOURCE_LEASE_WAIT_MS = 5 * 60_000;

interface Target {
  remoteId: string;
  name: string;
  remote: Remote;
}

interface MirrorRun {
  deps: MirrorJobDeps;
  context: RunContext;
  job: { id: string; name: string };
  settings: JobSettings;
  schedule: ScheduleRetention;
  source: { id: string; name: string; remote: Remote };
  targets: Target[];
  addBytes: (bytes: number) => void;
}

export async function runMirrorJob(deps: MirrorJobDeps, context: RunContext): Promise<RunOutcome> {
  const { run, root, signal } = context;
  if (!run.jobId) return { status: "FAILURE", error: "This run has no job (it was deleted)." };
  const job = await deps.db.job.findUnique({
    where: { id: run.jobId },
    include: { remotes: { include: { remote: true } }, schedules: true, sourceRemote: true },
  });
  if (!job) return { status: "FAILURE", error: "The job of this run was deleted." };
  const sourceRow = job.sourceRemote;
  if (!sourceRow)
    return { status: "FAILURE", error: `Mirror job ${job.name} has no source remote: edit the job and choose the remote to copy from.` };
  if (!sourceRow.enabled)
    return { status: "FAILURE", error: `The source remote ${sourceRow.name} is disabled: enable it, or choose another source.` };
  const settings = job.settings as unknown as JobSettings;
  const schedule = scheduleOf(job.schedules, run.scheduleId);

  let sourceRemote: Remote;
  try {
    sourceRemote = deps.remotes.open(sourceRow);
    await sourceRemote.open();
  } catch (error) {
    return {
      status: "FAILURE",
      error: `The source remote ${sourceRow.name} could not be opened (${messageOf(error)}): nothing was copied.`,
    };
  }
  const targets = await openTargets(
    job.remotes.map((link) => link.remote),
    deps.remotes,
    root,
  );
  try {
    if (targets.length === 0) return { status: "FAILURE", error: "None of the job's target remotes could be opened: nothing was copied." };
    const selected = (job.selection as { vmUuids?: string[] }).vmUuids ?? [];
    const vmUuids = selected.length > 0 ? selected : await listVmUuids(sourceRemote);
    context.report({ vmsTotal: vmUuids.length, vmUuids });
    if (vmUuids.length === 0)
      return { status: "SKIPPED", error: `The source remote ${sourceRow.name} holds no VM backup: nothing to copy.` };

    let transferred = 0;
    let succeeded = 0;
    const failed: string[] = [];
    const fractions = new Map<string, number>();
    const report = () =>
      context.report({
        vmsSucceeded: succeeded,
        vmsFailed: failed.length,
        transferredBytes: transferred,
        progress: [...fractions.values()].reduce((sum, f) => sum + f, 0) / vmUuids.length,
      });
    const mirror: MirrorRun = {
      deps,
      context,
      job,
      settings,
      schedule,
      source: { id: sourceRow.id, name: sourceRow.name, remote: sourceRemote },
      targets,
      addBytes: (bytes) => {
        transferred += bytes;
        report();
      },
    };
    report();
    await forEachLimited(vmUuids, settings.concurrency, async (vmUuid) => {
      if (signal.aborted) return;
      const ok = await mirrorVm(mirror, vmUuid, (fraction) => {
        fractions.set(vmUuid, Math.min(0.99, Math.max(fractions.get(vmUuid) ?? 0, fraction)));
        report();
      });
      fractions.set(vmUuid, 1);
      if (ok) succeeded++;
      else failed.push(vmUuid);
      report();
    });
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
    if (failed.length > 0) {
      const names = await vmNames(deps.db, failed);
      return { status: "FAILURE", error: `${failed.length} of ${vmUuids.length} VMs failed: ${names.join(", ")}.` };
    }
    return { status: "SUCCESS" };
  } finally {
    await Promise.all([sourceRemote, ...targets.map((t) => t.remote)].map((remote) => remote.close().catch(() => undefined)));
  }
}

/** Mirrors one VM to every target under its own task; false when it failed on every target. Skipped VMs count as done. */
async function mirrorVm(mirror: MirrorRun, vmUuid: string, onProgress: (fraction: number) => void): Promise<boolean> {
  const { context, source, deps } = mirror;
  const { root, signal } = context;
  let scan: ScannedBackup[] = [];
  let scanError: unknown;
  try {
    scan = (await scanRepository(source.remote, { vmUuid })).backups.sort((a, b) => a.timestamp - b.timestamp);
  } catch (error) {
    scanError = error;
  }
  const vmName = scan.at(-1)?.vmName ?? (await vmNames(deps.db, [vmUuid]))[0];
  const task = await root.child("vm", vmName, { vmUuid });
  try {
    if (scanError !== undefined) throw new Error(`the source remote ${source.name} could not be read: ${messageOf(scanError)}`);
    if (scan.length === 0) {
      await task.end("SKIPPED", `the source remote ${source.name} holds no restore point of ${vmName}`);
      return true;
    }
    const writing = (await liveClaims(source.remote, vmUuid)).find((claim) => claim.kind === "x" && !claim.maintenance);
    if (writing) {
      const message = `${vmName} is being backed up to ${source.name} now (${writing.purpose}): skipped this run, the next run copies it`;
      await root.warn(message);
      await task.end("SKIPPED", message);
      return true;
    }
    let lease;
    try {
      lease = await acquireVmLease(source.remote, vmUuid, `mirror of job ${mirror.job.name}`, {
        owner: context.run.id,
        waitMs: SOURCE_LEASE_WAIT_MS,
        signal,
        onWait: (holder) => void task.note(`waiting: ${holder}`),
      });
    } catch (error) {
      if (!(error instanceof RepositoryError && error.reason === RepositoryErrorReason.Locked) || signal.aborted) throw error;
      const message = `${vmName} on ${source.name} stayed busy (${error.message.replace(/^LOCKED: /, "")}): skipped this run, the next run copies it`;
      await root.warn(message);
      await task.end("SKIPPED", message);
      return true;
    }
    await task.note(null);
    const outcomes: { target: Target; error?: string; copied: string[] }[] = [];
    let copiedBytes = 0;
    try {
      const vmSignal = AbortSignal.any([signal, lease.signal]);
      // Scanned again under the lease: what is copied is what the lease protects.
      scan = (await scanRepository(source.remote, { vmUuid })).backups.sort((a, b) => a.timestamp - b.timestamp);
      // Every target's plan first: the VM's progress is the bytes copied of all that its targets lack.
      const plans = new Map<Target, MirrorPlan | { error: unknown }>();
      for (const target of mirror.targets)
        plans.set(target, await planTarget(mirror, target, scan, vmUuid).catch((error: unknown) => ({ error })));
      const totalBytes = Math.max(
        1,
        [...plans.values()].reduce((sum, plan) => sum + ("copies" in plan ? plan.copies.reduce((n, b) => n + b.size, 0) : 0), 0),
      );
      for (const target of mirror.targets) {
        if (vmSignal.aborted) break;
        const copied: string[] = [];
        try {
          const plan = plans.get(target) as MirrorPlan | { error: unknown };
          if ("error" in plan) throw plan.error;
          await mirrorToTarget(mirror, target, plan, vmName, vmUuid, task, vmSignal, copied, (bytes) => {
            copiedBytes += bytes;
            mirror.addBytes(bytes);
            task.progress(Math.min(0.99, copiedBytes / totalBytes), copiedBytes);
            onProgress(copiedBytes / totalBytes);
          });
          outcomes.push({ target, copied });
        } catch (error) {
          if (signal.aborted) throw error;
          outcomes.push({ target, copied, error: messageOf(error) });
        }
      }
    } finally {
      await lease.release().catch(() => undefined);
    }
    signal.throwIfAborted();
    const failures = outcomes.filter((o) => o.error !== undefined);
    for (const failure of failures) if (failures.length < outcomes.length) await task.warn(`to ${failure.target.name}: ${failure.error}`);
    if (failures.length === outcomes.length) {
      await task.fail(new Error(failures.map((f) => `to ${f.target.name}: ${f.error}`).join("; ")));
      return false;
    }
    await healthCheckNewest(mirror, outcomes, vmUuid, task);
    const copiedPoints = outcomes.reduce((sum, o) => sum + o.copied.length, 0);
    await task.succeed({ copied: copiedPoints, targets: outcomes.length - failures.length }, copiedBytes);
    return true;
  } catch (error) {
    if (signal.aborted) await task.end("CANCELLED", `stopped: ${String(signal.reason ?? "cancelled")}`).catch(() => undefined);
    else await task.fail(error);
    return false;
  }
}

/** What `target` lacks of the source's points of the VM (mirror-plan.ts), from one scan of its VM folder. */
async function planTarget(mirror: MirrorRun, target: Target, source: ScannedBackup[], vmUuid: string): Promise<MirrorPlan> {
  const { job } = mirror;
  const onTarget = (await scanRepository(target.remote, { vmUuid })).backups;
  const mirrorDisks = `${vmDir(vmUuid)}/${VDIS_DIR}/${job.id}`;
  const vhdNames = new Set(
    (await target.remote.list(mirrorDisks, { recursive: true })).filter(
      (name) => name.endsWith(".vhd") && !target.remote.isTemporaryName(name),
    ),
  );
  return planMirror(
    source,
    onTarget.map((b) => b.timestamp),
    vhdNames,
  );
}

async function mirrorToTarget(
  mirror: MirrorRun,
  target: Target,
  plan: MirrorPlan,
  vmName: string,
  vmUuid: string,
  vmTask: TaskContext,
  signal: AbortSignal,
  copied: string[],
  addBytes: (bytes: number) => void,
): Promise<void> {
  const { deps, context, job, schedule } = mirror;
  for (const reason of plan.blocked) await vmTask.warn(`not copied to ${target.name}: ${reason}`);
  if (plan.copies.length > 0) {
    try {
      for (const backup of plan.copies) {
        signal.throwIfAborted();
        const at = formatBackupTimestamp(backup.timestamp);
        await vmTask.run("copy", `copy ${vmName} ${at} to ${target.name}`, async (task) => {
          let reported = 0;
          const result = await copyBackup(mirror.source.remote, target.remote, backup, {
            mirrorJobId: job.id,
            scheduleId: schedule.id ?? MANUAL_SCHEDULE_ID,
            runId: context.run.id,
            signal,
            onBytes: (bytes) => {
              addBytes(bytes - reported);
              reported = bytes;
              task.progress(Math.min(0.99, bytes / Math.max(1, backup.size)), bytes);
            },
            onUnverifiable: (message) => task.warn(message),
          });
          copied.push(result.metadataPath);
          return { metadataPath: result.metadataPath, bytes: result.bytes };
        });
      }
    } finally {
      // What was copied before a failure is whole (each copy writes its metadata last): it is listed either way.
      await indexRemote(deps.db, target.remoteId, target.remote, { vmUuid, runId: context.run.id });
    }
  }
  await applyTargetRetention(mirror, target, vmUuid, vmTask, signal);
}

/** The schedule's retention of the mirror's copies on one target, as applyRemoteRetention does after a FULL or DELTA backup. */
async function applyTargetRetention(mirror: MirrorRun, target: Target, vmUuid: string, vmTask: TaskContext, signal: AbortSignal) {
  const { schedule, deps, job, context } = mirror;
  if (schedule.exportRetention <= 0 || !schedule.id) return;
  const scheduleId = schedule.id;
  const gfs = schedule.gfs && hasGfs(schedule.gfs) ? schedule.gfs : undefined;
  await vmTask.run("retention", `retention on ${target.name}: keep ${schedule.exportRetention}${gfs ? " and GFS" : ""}`, async (task) => {
    let result;
    try {
      result = await applyRetention(target.remote, {
        vmUuid,
        jobId: job.id,
        scheduleId,
        keep: schedule.exportRetention,
        ...(gfs ? { gfs: { ...gfs, now: new Date() } } : {}),
        lock: { owner: context.run.id },
        signal,
        onRemoving: unlistBeforeRemoving(deps.db, target.remoteId),
      });
    } catch (error) {
      if (!(error instanceof RepositoryError && error.reason === RepositoryErrorReason.Locked) || signal.aborted) throw error;
      await task.warn(`retention postponed to the next run: ${error.message.replace(/^LOCKED: /, "")}`);
      return { deleted: 0, merged: 0, postponed: true };
    }
    for (const problem of result.problems) await task.warn(problem);
    const index = await indexRemote(deps.db, target.remoteId, target.remote, { vmUuid });
    return { deleted: result.deleted.length, merged: result.merged.length, restorePoints: index.indexed };
  });
}

/** The job's health check on the newest point this run copied (on the first target that has it). */
async function healthCheckNewest(
  mirror: MirrorRun,
  outcomes: { target: Target; copied: string[] }[],
  vmUuid: string,
  vmTask: TaskContext,
): Promise<void> {
  const srUuid = mirror.settings.healthCheckSrUuid;
  const copiedTo = outcomes.find((o) => o.copied.length > 0);
  if (!srUuid || !copiedTo) return;
  if (!mirror.deps.healthCheck) {
    await vmTask.warn("this Cairn process cannot health-check: the mirrored copy was not checked");
    return;
  }
  const point = await mirror.deps.db.restorePoint.findFirst({
    where: { remoteId: copiedTo.target.remoteId, vmUuid, path: { in: copiedTo.copied } },
    orderBy: { timestamp: "desc" },
  });
  if (!point) return;
  const task = await vmTask.child("healthCheck", `health check of the mirrored ${point.kind} restore point on ${copiedTo.target.name}`, {
    vmUuid,
  });
  try {
    const verdict = await checkRestorePointHealth(mirror.deps.healthCheck, {
      point,
      srUuid,
      task,
      signal: mirror.context.signal,
      log: mirror.context.log,
      runId: mirror.context.run.id,
    });
    if (verdict.status === "FAILED") await vmTask.warn(`health check failed: ${verdict.reason}`);
  } catch (error) {
    if (mirror.context.signal.aborted) throw error;
    await task.fail(error).catch(() => undefined);
    await vmTask.warn(`health check not completed: ${messageOf(error)}`);
  }
}

function scheduleOf(
  schedules: {
    id: string;
    enabled: boolean;
    exportRetention: number;
    copyRetention: number;
    snapshotRetention: number;
    gfsDays: number;
    gfsWeeks: number;
    gfsMonths: number;
    gfsYears: number;
    timezone: string;
    weekStart: "MONDAY" | "SUNDAY";
    dayStartHour: number;
  }[],
  runScheduleId: string | null,
): ScheduleRetention {
  const row =
    schedules.find((s) => s.id === runScheduleId) ?? (runScheduleId ? undefined : (schedules.find((s) => s.enabled) ?? schedules[0]));
  if (!row) return { id: null, exportRetention: 0, copyRetention: 0, snapshotRetention: 0 };
  return {
    id: row.id,
    exportRetention: row.exportRetention,
    copyRetention: row.copyRetention,
    snapshotRetention: row.snapshotRetention,
    gfs: {
      days: row.gfsDays,
      weeks: row.gfsWeeks,
      months: row.gfsMonths,
      years: row.gfsYears,
      timeZone: row.timezone,
      weekStart: row.weekStart,
      dayStartHour: row.dayStartHour,
    },
  };
}

async function openTargets(rows: RemoteRow[], remotes: StoredRemotes, root: TaskContext): Promise<Target[]> {
  const targets: Target[] = [];
  for (const row of rows) {
    if (!row.enabled) {
      await root.warn(`Remote ${row.name} is disabled: skipped.`);
      continue;
    }
    try {
      const remote = remotes.open(row);
      await remote.open();
      targets.push({ remoteId: row.id, name: row.name, remote });
    } catch (error) {
      await root.warn(`Remote ${row.name} could not be opened (${messageOf(error)}): skipped.`);
    }
  }
  return targets;
}

/** VM names for messages: the newest name a restore point or the inventory knows, else the uuid. */
async function vmNames(db: Db, uuids: string[]): Promise<string[]> {
  const [points, inventory] = await Promise.all([
    db.restorePoint.findMany({ where: { vmUuid: { in: uuids } }, select: { vmUuid: true, vmName: true }, orderBy: { timestamp: "desc" } }),
    db.vmInventory.findMany({ where: { uuid: { in: uuids } }, select: { uuid: true, name: true } }),
  ]);
  return uuids.map((uuid) => points.find((p) => p.vmUuid === uuid)?.vmName ?? inventory.find((v) => v.uuid === uuid)?.name ?? uuid);
}
