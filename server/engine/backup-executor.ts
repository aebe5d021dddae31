/**
 * Executes a job's run: resolves the VMs now, opens the targets, backs up VMs with the job's concurrency and retries, and
 * derives the run's outcome (a VM fails only when all its targets failed; the run fails when a VM failed; SKIPPED when no
 * VM matched). The per-mode pipelines live in vm-*.ts. A VERIFY job's runs, which back nothing up, go to `deps.verify`
 * (verify-job-executor.ts).
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
import type { RunContext, RunExecutor, RunOutcome } from "./run-executor.js";
import { resolveSelection, type SelectableVm } from "./backup/vm-selection.js";
import { rollingSnapshot } from "./backup/vm-rolling-snapshot.js";
import { fullBackup } from "./backup/vm-full-backup.js";
import { deltaBackup } from "./backup/vm-delta-backup.js";
import { disasterRecovery } from "./replication/vm-disaster-recovery.js";
import { continuousReplication } from "./replication/vm-continuous-replication.js";
import { withHealthCheck, type PostBackupHealthCheck } from "./health-check/health-check-after-backup.js";

export interface BackupExecutorDeps {
  db: Db;
  registry: PoolRegistry;
  remotes: StoredRemotes;
  log: Logger;
  /** Checks each new restore point when the job's healthCheckSrUuid is set; absent: no per-job health check. */
  healthCheck?: PostBackupHealthCheck;
  /** Executes the runs of VERIFY jobs; absent: they fail saying this process cannot verify. */
  verify?: RunExecutor;
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

export function createBackupExecutor(deps: BackupExecutorDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const { run, root, signal } = context;
    if (!run.jobId) return { status: "FAILURE", error: "This run has no job (it was deleted)." };
    const job = await deps.db.job.findUnique({
      where: { id: run.jobId },
      include: { remotes: { include: { remote: true } }, schedules: true },
    });
    if (!job) return { status: "FAILURE", error: "The job of this run was deleted." };
    if (job.mode === "VERIFY")
      return deps.verify ? deps.verify(context) : { status: "FAILURE", error: "This Cairn process cannot run VERIFY jobs." };
    const pipeline = PIPELINES[job.mode];
    if (!pipeline) return { status: "FAILURE", error: `${job.mode} jobs are not supported by this version of Cairn yet.` };
    const settings = job.settings as unknown as JobSettings;
    const scheduleRow =
      job.schedules.find((s) => s.id === run.scheduleId) ??
      (run.scheduleId ? undefined : (job.schedules.find((s) => s.enabled) ?? job.schedules[0]));
    const schedule: ScheduleRetention = scheduleRow
      ? {
          id: scheduleRow.id,
          exportRetention: scheduleRow.exportRetention,
          copyRetention: scheduleRow.copyRetention,
          snapshotRetention: scheduleRow.snapshotRetention,
        }
      : { id: null, exportRetention: 0, copyRetention: 0, snapshotRetention: 0 };

    const visible: (SelectableVm & { poolId: string })[] = deps.registry.all().flatMap((connection) => listVms(connection));
    const selection = resolveSelection(job.selection as unknown as Selection, visible);
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
    const progress = () => (succeeded + failed.length + [...underWay.values()].reduce((sum, f) => sum + f, 0)) / total;
    const report = () =>
      context.report({ vmsSucceeded: succeeded, vmsFailed: failed.length, transferredBytes: transferred, progress: progress() });
    report();

    try {
      await forEachLimited(selection.vms, settings.concurrency, async (vm) => {
        if (signal.aborted) return;
        const task = await root.child("vm", vm.name, { vmUuid: vm.uuid });
        underWay.set(vm.uuid, 0);
        const connection = deps.registry.get(vm.poolId);
        try {
          if (!connection) throw new Error(`The pool of ${vm.name} is no longer connected.`);
          let attempt = 0;
          for (;;) {
            try {
              const result = await pipeline({
                db: deps.db,
                log: context.log,
                runId: run.id,
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
                targets,
                addTransferred: (bytes) => {
                  transferred += bytes;
                  report();
                },
                reportProgress: (fraction) => {
                  const current = underWay.get(vm.uuid);
                  if (current === undefined || !(fraction > current)) return;
                  underWay.set(vm.uuid, Math.min(0.99, fraction));
                  report();
                },
              });
              await task.succeed({ restorePoints: result.restorePointIds.length }, result.transferredBytes);
              underWay.delete(vm.uuid);
              succeeded++;
              break;
            } catch (error) {
              if (signal.aborted || attempt >= settings.retries) throw error;
              attempt++;
              await task.warn(
                `attempt ${attempt} failed (${messageOf(error)}); retrying in ${(RETRY_BASE_MS * 2 ** (attempt - 1)) / 1000} s`,
              );
              await delay(RETRY_BASE_MS * 2 ** (attempt - 1), signal);
            }
          }
        } catch (error) {
          if (signal.aborted) await task.end("CANCELLED", `stopped: ${String(signal.reason ?? "cancelled")}`);
          else await task.fail(error);
          underWay.delete(vm.uuid);
          failed.push(vm.name);
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
  root: RunContext["root"],
): Promise<BackupTarget[]> {
  const targets: BackupTarget[] = [];
  for (const row of rows) {
    if (!row.enabled) {
      await root.warn(`Remote ${row.name} is disabled: skipped.`);
      continue;
    }
    try {
      const remote = remotes.open(row as RemoteRow);
      await remote.open();
      targets.push({ remoteId: row.id, name: row.name, remote });
    } catch (error) {
      await root.warn(`Remote ${row.name} could not be opened (${messageOf(error)}): skipped.`);
    }
  }
  return targets;
}
