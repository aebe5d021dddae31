/**
 * Executes a job's run: resolves the VMs now, opens the targets, backs up VMs with the job's concurrency and retries, and
 * derives the run's outcome (a VM fails only when all its targets failed; the run fails when a VM failed; SKIPPED when no
 * VM matched). The per-mode pipelines live in vm-*.ts. A VERIFY job's runs, which back nothing up, go to `deps.verify`
 * (verify-job-executor.ts); a MIRROR job's, which copy restore points between remotes, to mirror/mirror-job-executor.ts.
 */
import type { Db } from "../db/prisma.js";
import { messageOf } from "../errors.js";
import type { Logger } from "../log.js";
import type { RemoteRow, StoredRemotes } from "./stored-remotes.js";
import type { JobSettings, Selection } from "../domain/job-settings.js";
import { listVms } from "../xapi/inventory.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import { VmOperations } from "../xapi/vm-operations.js";
import type { BackupTarget, ScheduleRetention, VmBackupContext, VmBackupResult } from "./backup/backup-context.js";
import { delay, forEachLimited } from "./concurrency.js";
import type { RunContext, RunExecutor, RunOutcome, RunRecord, VmExecutor } from "./run-executor.js";
import type { TaskContext } from "./task-context.js";
import { resolveSelection, type SelectableVm } from "./backup/vm-selection.js";
import { rollingSnapshot } from "./backup/vm-rolling-snapshot.js";
import { fullBackup } from "./backup/vm-full-backup.js";
import { deltaBackup } from "./backup/vm-delta-backup.js";
import { disasterRecovery } from "./replication/vm-disaster-recovery.js";
import { continuousReplication } from "./replication/vm-continuous-replication.js";
import { withHealthCheck, type PostBackupHealthCheck } from "./health-check/health-check-after-backup.js";
import { runMirrorJob } from "./mirror/mirror-job-executor.js";

export interface BackupExecutorDeps {
  db: Db;
  registry: PoolRegistry;
  remotes: StoredRemotes;
  log: Logger;
  /** Checks each new restore point when the job's healthCheckSrUuid is set; absent: no per-job health check. */
  healthCheck?: PostBackupHealthCheck;
  /** Executes the runs of VERIFY jobs; absent: they fail saying this process cannot verify. */
  verify?: RunExecutor;
  /** Executes the runs of METADATA jobs (server/engine/metadata/); absent: they fail saying this process cannot. */
  metadata?: RunExecutor;
}

type Pipeline = (ctx: VmBackupContext) => Promise<VmBackupResult>;

const PIPELINES: Record<string, Pipeline | undefined> = {
  FULL: withHealthCheck(fullBackup),
  DELTA: withHealthCheck(deltaBackup),
  ROLLING_SNAPSHOT: withHealthCheck(rollingSnapshot),
  DISASTER_RECOVERY: withHealthCheck(disasterRecovery),
  CONTINUOUS_REPLICATION: withHealthCheck(continuousReplication),
};

/** Modes that write to remotes (the others write to SRs, or only snapshot). */
const REMOTE_MODES = new Set(["FULL", "DELTA"]);

const RETRY_BASE_MS = 2_000;

/**
 * Backup times name files at one-second precision: two backups of one VM in the same second (a quick retry, a test) would
 * collide, so each VM's times strictly increase within this process.
 */
const lastBackupTime = new Map<string, number>();
function nextBackupTime(vmUuid: string): Date {
  const time = Math.max(Math.floor(Date.now() / 1000) * 1000, (lastBackupTime.get(vmUuid) ?? 0) + 1000);
  lastBackupTime.set(vmUuid, time);
  return new Date(time);
}

/** What a run needs to back up any of its VMs, read once per run (and once per VM on a worker other than the run's). */
interface PreparedRun {
  job: { id: string; name: string; mode: string; remotes: { remote: Parameters<typeof openTargets>[0][number] }[] };
  settings: JobSettings;
  schedule: ScheduleRetention;
  pipeline: Pipeline;
}

type Prepared = { prepared: PreparedRun; selection: Selection } | { outcome: RunOutcome };

async function prepareRun(deps: BackupExecutorDeps, context: { run: RunRecord }): Promise<Prepared> {
  const { run } = context;
  if (!run.jobId) return { outcome: { status: "FAILURE", error: "This run has no job (it was deleted)." } };
  const job = await deps.db.job.findUnique({
    where: { id: run.jobId },
    include: { remotes: { include: { remote: true } }, schedules: true },
  });
  if (!job) return { outcome: { status: "FAILURE", error: "The job of this run was deleted." } };
  const pipeline = PIPELINES[job.mode];
  if (!pipeline) return { outcome: { status: "FAILURE", error: `${job.mode} jobs are not supported by this version of Cairn yet.` } };
  const scheduleRow =
    job.schedules.find((s) => s.id === run.scheduleId) ??
    (run.scheduleId ? undefined : (job.schedules.find((s) => s.enabled) ?? job.schedules[0]));
  const schedule: ScheduleRetention = scheduleRow
    ? {
        id: scheduleRow.id,
        exportRetention: scheduleRow.exportRetention,
        copyRetention: scheduleRow.copyRetention,
        snapshotRetention: scheduleRow.snapshotRetention,
        gfs: {
          days: scheduleRow.gfsDays,
          weeks: scheduleRow.gfsWeeks,
          months: scheduleRow.gfsMonths,
          years: scheduleRow.gfsYears,
          timeZone: scheduleRow.timezone,
          weekStart: scheduleRow.weekStart,
          dayStartHour: scheduleRow.dayStartHour,
        },
      }
    : { id: null, exportRetention: 0, copyRetention: 0, snapshotRetention: 0 };
  return {
    prepared: { job, settings: job.settings as unknown as JobSettings, schedule, pipeline },
    selection: job.selection as unknown as Selection,
  };
}

export function createBackupExecutor(deps: BackupExecutorDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const { run, root, signal } = context;
    if (run.jobId) {
      const mode = (await deps.db.job.findUnique({ where: { id: run.jobId }, select: { mode: true } }))?.mode;
      if (mode === "VERIFY")
        return deps.verify ? deps.verify(context) : { status: "FAILURE", error: "This Cairn process cannot run VERIFY jobs." };
      if (mode === "MIRROR") {
        // The health check restores through the pools: only where this process health-checks backups too.
        const { db, registry, remotes, log } = deps;
        return runMirrorJob({ db, remotes, log, healthCheck: deps.healthCheck ? { db, registry, remotes, log } : undefined }, context);
      }
      if (mode === "METADATA")
        return deps.metadata ? deps.metadata(context) : { status: "FAILURE", error: "This Cairn process cannot run METADATA jobs." };
    }
    const ready = await prepareRun(deps, context);
    if ("outcome" in ready) return ready.outcome;
    const { prepared } = ready;
    const { job, settings } = prepared;

    const visible: (SelectableVm & { poolId: string })[] = deps.registry.all().flatMap((connection) => listVms(connection));
    const selection = resolveSelection(ready.selection, visible);
    for (const vm of selection.excluded) await root.warn(`${vm.name} is tagged cairn:no-bak: left out.`);
    const total = selection.vms.length + selection.missing.length;
    context.report({ vmsTotal: total, vmUuids: [...selection.vms.map((v) => v.uuid), ...selection.missing] });
    if (total === 0) return { status: "SKIPPED", error: "No VM matched the job's selection: nothing to do." };

    const targets = await openTargets(
      job.remotes.map((jr) => jr.remote),
      deps.remotes,
      root,
    );
    if (REMOTE_MODES.has(job.mode) && targets.length === 0) {
      return { status: "FAILURE", error: "None of the job's remotes could be opened: nothing was backed up." };
    }

    let succeeded = 0;
    const failed: string[] = [];
    let transferred = 0;
    for (const uuid of selection.missing) {
      const task = await root.child("vm", uuid, { vmUuid: uuid });
      await task.fail(new Error(`VM ${uuid} is in no connected pool: it was removed, or its pool is disconnected.`));
      failed.push(uuid);
    }
    // Fractions of the VMs under way; a VM leaves the map when it ends (then it counts as one whole VM, done or failed).
    const underWay = new Map<string, number>();
    // Bytes of the VMs under way on other workers (their task's size), added to `transferred` when they end.
    const remoteBytes = new Map<string, number>();
    const progress = () => (succeeded + failed.length + [...underWay.values()].reduce((sum, f) => sum + f, 0)) / total;
    const report = () =>
      context.report({
        vmsSucceeded: succeeded,
        vmsFailed: failed.length,
        transferredBytes: transferred + [...remoteBytes.values()].reduce((sum, b) => sum + b, 0),
        progress: progress(),
      });
    report();
    const reportProgress = (vmUuid: string, fraction: number) => {
      const current = underWay.get(vmUuid);
      if (current === undefined || !(fraction > current)) return;
      underWay.set(vmUuid, Math.min(0.99, fraction));
      report();
    };

    try {
      // The job's concurrency: at most `settings.concurrency` VMs of this run are under way at once. With a dispatcher the
      // VMs are executed by any worker of the cluster, but only this run's worker hands them out, one slot per VM until its
      // task has ended (or its worker is known dead), and a job has one run at a time (run-launcher.ts): so the limit holds
      // across every worker without a lock of its own.
      await forEachLimited(selection.vms, settings.concurrency, async (vm, index) => {
        if (signal.aborted) return;
        const task = await root.child("vm", vm.name, { vmUuid: vm.uuid });
        underWay.set(vm.uuid, 0);
        if (context.vms) {
          const end = await context.vms.run(task, vm.uuid, index, (fraction, bytes) => {
            remoteBytes.set(vm.uuid, bytes);
            reportProgress(vm.uuid, fraction);
          });
          remoteBytes.delete(vm.uuid);
          underWay.delete(vm.uuid);
          transferred += end.sizeBytes;
          if (end.status === "SUCCESS") succeeded++;
          else failed.push(vm.name);
        } else {
          const ok = await backUpVm(deps, prepared, {
            run,
            vm,
            task,
            signal,
            log: context.log,
            targets,
            addTransferred: (bytes) => {
              transferred += bytes;
              report();
            },
            reportProgress: (fraction) => reportProgress(vm.uuid, fraction),
          });
          underWay.delete(vm.uuid);
          if (ok) succeeded++;
          else failed.push(vm.name);
        }
        report();
      });
    } finally {
      await Promise.all(targets.map((t) => t.remote.close().catch(() => undefined)));
    }
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
    if (failed.length > 0) return { status: "FAILURE", error: `${failed.length} of ${total} VMs failed: ${failed.join(", ")}.` };
    return { status: "SUCCESS" };
  };
}

/**
 * Backs up one VM of a run on this worker, for a run held by another worker (or by this one) that dispatched it. Ends the
 * VM's task; its bytes go to the task's size, where the run's worker reads them.
 */
export function createBackupVmExecutor(deps: BackupExecutorDeps): VmExecutor {
  return async ({ run, vmUuid, vmName, task, signal, log }) => {
    const ready = await prepareRun(deps, { run });
    if ("outcome" in ready) return task.fail(new Error(ready.outcome.error ?? "The run cannot be executed."));
    const vm = deps.registry
      .all()
      .flatMap((connection) => listVms(connection))
      .find((v) => v.uuid === vmUuid);
    if (!vm)
      return task.fail(
        new Error(`${vmName} is no longer in its pool (as this worker sees it): it was removed, or its pool is disconnected.`),
      );
    // The run's worker already warned about remotes it could not open: here they are only left out.
    const targets = await openTargets(
      ready.prepared.job.remotes.map((jr) => jr.remote),
      deps.remotes,
      undefined,
    );
    let transferred = 0;
    let fraction = 0;
    try {
      if (REMOTE_MODES.has(ready.prepared.job.mode) && targets.length === 0)
        return await task.fail(new Error("None of the job's remotes could be opened from this worker: nothing was backed up."));
      await backUpVm(deps, ready.prepared, {
        run,
        vm,
        task,
        signal,
        log,
        targets,
        addTransferred: (bytes) => {
          transferred += bytes;
          task.progress(fraction, transferred);
        },
        reportProgress: (value) => {
          if (!(value > fraction)) return;
          fraction = Math.min(0.99, value);
          task.progress(fraction, transferred);
        },
      });
    } finally {
      await Promise.all(targets.map((t) => t.remote.close().catch(() => undefined)));
    }
  };
}

/** One VM, with the job's retries; ends `task`. Returns whether it succeeded. */
async function backUpVm(
  deps: BackupExecutorDeps,
  prepared: PreparedRun,
  work: {
    run: RunRecord;
    vm: SelectableVm & { poolId: string };
    task: TaskContext;
    signal: AbortSignal;
    log: Logger;
    targets: BackupTarget[];
    addTransferred: (bytes: number) => void;
    reportProgress: (fraction: number) => void;
  },
): Promise<boolean> {
  const { job, settings, schedule, pipeline } = prepared;
  const { vm, task, signal } = work;
  const connection = deps.registry.get(vm.poolId);
  try {
    if (!connection) throw new Error(`The pool of ${vm.name} is no longer connected.`);
    let attempt = 0;
    for (;;) {
      try {
        const result = await pipeline({
          db: deps.db,
          log: work.log,
          runId: work.run.id,
          jobId: job.id,
          jobName: job.name,
          settings,
          schedule,
          vm,
          connection,
          registry: deps.registry,
          healthCheck: deps.healthCheck,
          ops: new VmOperations(connection),
          task,
          signal,
          timestamp: nextBackupTime(vm.uuid),
          targets: work.targets,
          addTransferred: work.addTransferred,
          reportProgress: work.reportProgress,
        });
        await task.succeed({ restorePoints: result.restorePointIds.length }, result.transferredBytes);
        return true;
      } catch (error) {
        if (signal.aborted || attempt >= settings.retries) throw error;
        attempt++;
        await task.warn(`attempt ${attempt} failed (${messageOf(error)}); retrying in ${(RETRY_BASE_MS * 2 ** (attempt - 1)) / 1000} s`);
        await delay(RETRY_BASE_MS * 2 ** (attempt - 1), signal);
      }
    }
  } catch (error) {
    if (signal.aborted) await task.end("CANCELLED", `stopped: ${String(signal.reason ?? "cancelled")}`);
    else await task.fail(error);
    return false;
  }
}

async function openTargets(
  rows: {
    id: string;
    name: string;
    enabled: boolean;
    kind: string;
    location: string;
    options: unknown;
    username: string | null;
    passwordSealed: string | null;
    lastTest: unknown;
    freeBytes: bigint | null;
    usedBytes: bigint | null;
    createdAt: Date;
    updatedAt: Date;
  }[],
  remotes: StoredRemotes,
  root: RunContext["root"] | undefined,
): Promise<BackupTarget[]> {
  const targets: BackupTarget[] = [];
  for (const row of rows) {
    if (!row.enabled) {
      await root?.warn(`Remote ${row.name} is disabled: skipped.`);
      continue;
    }
    try {
      const remote = remotes.open(row as RemoteRow);
      await remote.open();
      targets.push({ remoteId: row.id, name: row.name, remote });
    } catch (error) {
      await root?.warn(`Remote ${row.name} could not be opened (${messageOf(error)}): skipped.`);
    }
  }
  return targets;
}
