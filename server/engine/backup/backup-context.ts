/** What every per-VM backup pipeline receives. Built once per VM by the backup executor, frozen. */
import type { Db } from "../../db/prisma.js";
import type { Logger } from "../../log.js";
import type { Remote } from "../../remotes/remote.js";
import type { GfsPolicy } from "../../domain/gfs-retention.js";
import type { JobSettings } from "../../domain/job-settings.js";
import type { PoolConnection } from "../../xapi/pool-connection.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import type { VmOperations } from "../../xapi/vm-operations.js";
import type { TaskContext } from "../task-context.js";
import type { SelectableVm } from "./vm-selection.js";

export interface BackupTarget {
  remoteId: string;
  name: string;
  remote: Remote;
}

/**
 * The scheduleId a backup's metadata carries when its run was started by hand on a job without schedules (the metadata
 * format needs one; no retention counts such backups, so they are kept until removed).
 */
export const MANUAL_SCHEDULE_ID = "manual";

export interface ScheduleRetention {
  id: string | null;
  exportRetention: number;
  copyRetention: number;
  snapshotRetention: number;
  /** GFS retention on remotes besides the newest exportRetention (absent: none). */
  gfs?: Omit<GfsPolicy, "keepLast">;
}

export interface VmBackupContext {
  db: Db;
  log: Logger;
  runId: string;
  jobId: string;
  jobName: string;
  settings: Readonly<JobSettings>;
  schedule: Readonly<ScheduleRetention>;
  vm: SelectableVm;
  connection: PoolConnection;
  /** Every connected pool: replication (DR, CR) finds its target SRs there, on the source's pool or another. */
  registry?: PoolRegistry;
  ops: VmOperations;
  /** The VM's task in the run tree. */
  task: TaskContext;
  signal: AbortSignal;
  /** The backup's time: names its files and metadata. */
  timestamp: Date;
  targets: readonly BackupTarget[];
  /** Adds transferred bytes to the run's total. */
  addTransferred(bytes: number): void;
  /**
   * How far this VM's backup is (0..1), for the run's progress: without it a run of one VM would show 0 until its end. A
   * value lower than an earlier one (a retry starting over) is ignored, so the run's progress never goes down.
   */
  reportProgress?(fraction: number): void;
  /** Health-checks the new restore point after a successful backup (health-check-after-backup.ts); absent: no check. */
  healthCheck?(ctx: VmBackupContext, result: VmBackupResult): Promise<void>;
}

/** What one VM's backup produced. */
export interface VmBackupResult {
  /** Restore points recorded (ids). */
  restorePointIds: string[];
  transferredBytes: number;
}
