/** Database rows to API objects: BigInt byte counts become numbers, JSON columns get their typed shapes. */
import { effectiveSettings, type JobSettings as JobSettingsData, type Selection as SelectionData } from "../domain/job-settings.js";
import { paceOf } from "../domain/pace.js";
import { nextRunAt } from "../domain/schedule.js";
import { redactedWebhookUrl, webhookHost } from "../domain/webhook-target.js";
import type { SrView, VmView } from "../xapi/inventory.js";
import { Tag } from "../xapi/other-config-keys.js";
import type { Job, Schedule } from "./types/job.js";
import type { Pool, Sr, Vm } from "./types/pool.js";
import type { GraphQLContext } from "./context.js";
import type { Remote, RemoteTest } from "./types/remote.js";
import type { RestorePoint, RestorePointDisk } from "./types/restore-point.js";
import type { Run, Task } from "./types/run.js";
import type {
  BackupMode,
  Compression,
  IntegrityStatus,
  PoolStatus,
  RemoteKind,
  RemoteStatus,
  RestorePointKind,
  RunKind,
  RunStatus,
  TriggerKind,
  VerificationStatus,
} from "./types/enums.js";
import { VmRole, WeekStart } from "./types/enums.js";

const num = (value: bigint | number | null | undefined) => (value === null || value === undefined ? null : Number(value));

export function toSchedule(row: {
  id: string;
  name: string | null;
  cron: string;
  timezone: string;
  enabled: boolean;
  exportRetention: number;
  copyRetention: number;
  snapshotRetention: number;
  gfsDays: number;
  gfsWeeks: number;
  gfsMonths: number;
  gfsYears: number;
  weekStart: string;
  dayStartHour: number;
}): Schedule {
  return { ...row, weekStart: row.weekStart as WeekStart, nextRunAt: nextRunAt(row) };
}

export function toJob(row: {
  id: string;
  name: string;
  mode: string;
  enabled: boolean;
  selection: unknown;
  srUuids: string[];
  settings: unknown;
  createdAt: Date;
  updatedAt: Date;
  remotes: { remoteId: string }[];
  sourceRemoteId?: string | null;
  schedules: Parameters<typeof toSchedule>[0][];
}): Job {
  const selection = row.selection as SelectionData;
  return {
    id: row.id,
    name: row.name,
    mode: row.mode as BackupMode,
    enabled: row.enabled,
    selection: { vmUuids: selection.vmUuids ?? [], smart: selection.smart ?? null },
    srUuids: row.srUuids,
    settings: readableSettings(effectiveSettings(row.settings)),
    schedules: row.schedules.map(toSchedule),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    remoteIds: row.remotes.map((r) => r.remoteId),
    sourceRemoteId: row.sourceRemoteId ?? null,
  };
}

/** A job's settings as any reader sees them: the webhook URL, a secret, shows only its host. */
function readableSettings(settings: JobSettingsData): Job["settings"] {
  return {
    ...settings,
    reportWebhookUrl: redactedWebhookUrl(settings.reportWebhookUrl),
    reportWebhookHost: webhookHost(settings.reportWebhookUrl),
  } as Job["settings"];
}

export function toRemote(row: {
  id: string;
  name: string;
  kind: string;
  location: string;
  options: unknown;
  username: string | null;
  enabled: boolean;
  lastTest: unknown;
  freeBytes: bigint | null;
  usedBytes: bigint | null;
  encryptionKeySealed: string | null;
  immutabilityDays?: number;
}): Remote {
  const test = row.lastTest as (Omit<RemoteTest, "testedAt"> & { testedAt: string }) | null;
  const status: RemoteStatus = !row.enabled
    ? ("DISABLED" as RemoteStatus)
    : !test
      ? ("UNTESTED" as RemoteStatus)
      : test.ok
        ? ("OK" as RemoteStatus)
        : ("ERROR" as RemoteStatus);
  return {
    id: row.id,
    name: row.name,
    kind: row.kind as RemoteKind,
    location: row.location,
    options: row.options ?? {},
    username: row.username,
    enabled: row.enabled,
    status,
    lastTest: test ? { ...test, testedAt: new Date(test.testedAt) } : null,
    freeBytes: num(row.freeBytes),
    usedBytes: num(row.usedBytes),
    encrypted: row.encryptionKeySealed !== null,
    immutabilityDays: row.immutabilityDays ?? 0,
  };
}

export function toRun(row: {
  id: string;
  kind: string;
  trigger: string;
  status: string;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  error: string | null;
  progress: number;
  transferredBytes: bigint;
  vmsTotal: number;
  vmsSucceeded: number;
  vmsFailed: number;
  vmUuids: string[];
  jobId: string | null;
  scheduleId: string | null;
  params?: unknown;
}): Run {
  return {
    id: row.id,
    kind: row.kind as RunKind,
    trigger: row.trigger as TriggerKind,
    status: row.status as RunStatus,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    endedAt: row.endedAt,
    durationSeconds: row.startedAt ? Math.round(((row.endedAt ?? new Date()).getTime() - row.startedAt.getTime()) / 1000) : null,
    error: row.error,
    progress: row.progress,
    transferredBytes: Number(row.transferredBytes),
    ...paceOf({
      bytes: Number(row.transferredBytes),
      progress: row.progress,
      startedAt: row.startedAt,
      endedAt: row.endedAt,
      running: row.status === "RUNNING",
    }),
    vmsTotal: row.vmsTotal,
    vmsSucceeded: row.vmsSucceeded,
    vmsFailed: row.vmsFailed,
    vmUuids: row.vmUuids,
    jobId: row.jobId,
    scheduleId: row.scheduleId,
    params: row.params,
  };
}

export function toTask(row: {
  id: string;
  runId: string;
  parentId: string | null;
  kind: string;
  name: string;
  status: string;
  progress: number;
  startedAt: Date;
  endedAt: Date | null;
  message: string | null;
  warnings: string[];
  result: unknown;
  sizeBytes: bigint | null;
  vmUuid: string | null;
}): Task {
  const sizeBytes = num(row.sizeBytes);
  return {
    ...row,
    status: row.status as RunStatus,
    sizeBytes,
    ...paceOf({
      bytes: sizeBytes,
      progress: row.progress,
      startedAt: row.startedAt,
      endedAt: row.endedAt,
      running: row.status === "RUNNING",
    }),
  };
}

export function toRestorePoint(row: {
  id: string;
  kind: string;
  vmUuid: string;
  vmName: string;
  timestamp: Date;
  sizeBytes: bigint;
  srUuid: string | null;
  quiesced: boolean;
  compression: string;
  chainLength: number;
  disks: unknown;
  verificationStatus: string;
  verificationCheckedAt: Date | null;
  verificationError: string | null;
  remoteId: string | null;
  jobId: string | null;
  scheduleId: string | null;
  runId: string | null;
  integrityStatus: string;
  verifiedAt: Date | null;
  integrityProblems: unknown;
  integrityRepaired: unknown;
  immutableUntil?: Date | null;
}): RestorePoint {
  return {
    id: row.id,
    kind: row.kind as RestorePointKind,
    vmUuid: row.vmUuid,
    vmName: row.vmName,
    timestamp: row.timestamp,
    sizeBytes: Number(row.sizeBytes),
    sr: row.srUuid,
    quiesced: row.quiesced,
    compression: row.compression as Compression,
    chainLength: row.chainLength,
    disks: ((row.disks as RestorePointDisk[]) ?? []).map((d) => ({ id: d.id, name: d.name, virtualSize: Number(d.virtualSize) })),
    verification: {
      status: row.verificationStatus as VerificationStatus,
      checkedAt: row.verificationCheckedAt,
      error: row.verificationError,
    },
    integrity: {
      status: row.integrityStatus as IntegrityStatus,
      verifiedAt: row.verifiedAt,
      problems: jsonList(row.integrityProblems).map((p) => {
        const problem = (p ?? {}) as { file?: unknown; block?: unknown; detail?: unknown };
        return {
          file: String(problem.file ?? ""),
          block: typeof problem.block === "number" ? problem.block : null,
          detail: String(problem.detail ?? ""),
        };
      }),
      repaired: jsonList(row.integrityRepaired).map(String),
    },
    verifiedAt: row.verifiedAt,
    immutableUntil: row.immutableUntil ?? null,
    remoteId: row.remoteId,
    jobId: row.jobId,
    scheduleId: row.scheduleId,
    runId: row.runId,
  };
}

/** A JSON column holding a list (anything else reads as empty). */
function jsonList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

export function toVm(vm: VmView): Vm {
  return { uuid: vm.uuid, name: vm.name, powerState: vm.powerState, tags: vm.tags, role: vmRole(vm.tags), poolId: vm.poolId };
}

/**
 * What a VM is to Cairn, from the tags Cairn puts on its own products. A product's tag wins over cairn:no-bak, which the
 * health check's VM carries too: it says why the VM is there, not only that it is left out.
 */
export function vmRole(tags: readonly string[]): VmRole {
  if (tags.includes(Tag.Replica)) return VmRole.REPLICA;
  if (tags.includes(Tag.HealthCheck)) return VmRole.HEALTH_CHECK;
  if (tags.includes(Tag.Restored)) return VmRole.RESTORED;
  if (tags.includes(Tag.NoBackup)) return VmRole.EXCLUDED;
  return VmRole.VM;
}

export function toSr(sr: SrView): Sr {
  return {
    uuid: sr.uuid,
    name: sr.name,
    type: sr.type,
    contentType: sr.contentType,
    freeBytes: sr.freeBytes,
    sizeBytes: sr.sizeBytes,
    poolId: sr.poolId,
  };
}

export type { PoolStatus };

type PoolRow = Awaited<ReturnType<GraphQLContext["services"]["pools"]["get"]>>;

/** A pool as the API shows it: the row and what the live connection says. */
export function toPool(row: PoolRow, services: GraphQLContext["services"]): Pool {
  const live = services.pools.status(row);
  return {
    ...row,
    status: live.status as PoolStatus,
    lastError: live.lastError ?? null,
    warning: services.pools.warning(row.id),
    presentedFingerprint: services.pools.presentedFingerprint(row.id),
  };
}
