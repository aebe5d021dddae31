/** Every enum of the API, registered once. Values match the database enums where both exist. */
import { registerEnumType } from "type-graphql";

export enum BackupMode {
  FULL = "FULL",
  DELTA = "DELTA",
  ROLLING_SNAPSHOT = "ROLLING_SNAPSHOT",
  DISASTER_RECOVERY = "DISASTER_RECOVERY",
  CONTINUOUS_REPLICATION = "CONTINUOUS_REPLICATION",
  VERIFY = "VERIFY",
  MIRROR = "MIRROR",
  METADATA = "METADATA",
}
export enum RunStatus {
  PENDING = "PENDING",
  RUNNING = "RUNNING",
  SUCCESS = "SUCCESS",
  FAILURE = "FAILURE",
  SKIPPED = "SKIPPED",
  INTERRUPTED = "INTERRUPTED",
  CANCELLED = "CANCELLED",
}
export enum RunKind {
  BACKUP = "BACKUP",
  RESTORE = "RESTORE",
  HEALTH_CHECK = "HEALTH_CHECK",
  VERIFY = "VERIFY",
}
export enum Compression {
  NONE = "NONE",
  GZIP = "GZIP",
  ZSTD = "ZSTD",
}
export enum RemoteKind {
  LOCAL = "LOCAL",
  SMB = "SMB",
  NFS = "NFS",
  S3 = "S3",
}
export enum RestorePointKind {
  XVA = "XVA",
  VHD_CHAIN = "VHD_CHAIN",
  SNAPSHOT = "SNAPSHOT",
  REPLICA = "REPLICA",
}
export enum ReportWhen {
  ALWAYS = "ALWAYS",
  FAILURE = "FAILURE",
  NEVER = "NEVER",
}
export enum Role {
  ADMIN = "ADMIN",
  OPERATOR = "OPERATOR",
  VIEWER = "VIEWER",
}
export enum TriggerKind {
  SCHEDULE = "SCHEDULE",
  MANUAL = "MANUAL",
  API = "API",
}
export enum StatsGroupBy {
  DAY = "DAY",
  WEEK = "WEEK",
  JOB = "JOB",
  VM = "VM",
  REMOTE = "REMOTE",
}
export enum ArchiveFormat {
  TAR_GZ = "TAR_GZ",
  ZIP = "ZIP",
}
export enum PoolStatus {
  CONNECTING = "CONNECTING",
  CONNECTED = "CONNECTED",
  ERROR = "ERROR",
  DISCONNECTED = "DISCONNECTED",
}
export enum RemoteStatus {
  UNTESTED = "UNTESTED",
  OK = "OK",
  ERROR = "ERROR",
  DISABLED = "DISABLED",
}
export enum VerificationStatus {
  UNVERIFIED = "UNVERIFIED",
  OK = "OK",
  FAILED = "FAILED",
}
export enum IntegrityStatus {
  UNVERIFIED = "UNVERIFIED",
  OK = "OK",
  DAMAGED = "DAMAGED",
  REPAIRED = "REPAIRED",
}
export enum FileEntryType {
  FILE = "FILE",
  DIRECTORY = "DIRECTORY",
  SYMLINK = "SYMLINK",
  OTHER = "OTHER",
}

export enum VmRole {
  VM = "VM",
  REPLICA = "REPLICA",
  RESTORED = "RESTORED",
  HEALTH_CHECK = "HEALTH_CHECK",
  EXCLUDED = "EXCLUDED",
}

export enum WeekStart {
  MONDAY = "MONDAY",
  SUNDAY = "SUNDAY",
}

/** What a metadata backup holds (MetadataBackup.kind). */
export enum MetadataBackupKind {
  POOL = "POOL",
  CAIRN = "CAIRN",
}

const enums: [object, string, string][] = [
  [
    MetadataBackupKind,
    "MetadataBackupKind",
    "What a metadata backup holds: a pool's database (POOL) or Cairn's own configuration (CAIRN).",
  ],
  [
    BackupMode,
    "BackupMode",
    "How a job protects its VMs; VERIFY reads the restore points of its VMs on its remotes and checks every checksum; MIRROR copies the restore points of its source remote to its remotes; METADATA backs up pools' databases and Cairn's configuration.",
  ],
  [RunStatus, "RunStatus", "Where a run (or a task of it) stands."],
  [
    RunKind,
    "RunKind",
    "What a run does: a job's run (BACKUP, whatever the job's mode), a restore, a health check, or a verify of one restore point (verifyRestorePoint).",
  ],
  [Compression, "Compression", "Compression of XVA exports, done by the host."],
  [RemoteKind, "RemoteKind", "Where a remote stores its files."],
  [RestorePointKind, "RestorePointKind", "What a restore point is made of."],
  [ReportWhen, "ReportWhen", "When a job sends its report."],
  [Role, "Role", "ADMIN: everything. OPERATOR: read, run jobs, cancel runs, restore. VIEWER: read only."],
  [TriggerKind, "TriggerKind", "What started a run."],
  [StatsGroupBy, "StatsGroupBy", "How backupStats groups runs: day or ISO week (of its timeZone), job, VM, remote."],
  [ArchiveFormat, "ArchiveFormat", "Archive format of a file-level restore download."],
  [PoolStatus, "PoolStatus", "State of Cairn's connection to a pool."],
  [RemoteStatus, "RemoteStatus", "Outcome of the last test of a remote."],
  [VerificationStatus, "VerificationStatus", "Verdict of the last health check of a restore point."],
  [
    IntegrityStatus,
    "IntegrityStatus",
    "Verdict of the last verify of a restore point: UNVERIFIED (never verified), OK (every byte matches its checksum), DAMAGED (something differs or is missing: do not restore from it), REPAIRED (a damaged copy of a structure was rewritten from its intact twin; the data is as written).",
  ],
  [WeekStart, "WeekStart", "The first day of a week of GFS retention: MONDAY (ISO weeks, named 2026-W13) or SUNDAY."],
  [FileEntryType, "FileEntryType", "Kind of a file-system entry inside a backed-up disk."],
  [
    VmRole,
    "VmRole",
    "What a VM is to Cairn, from its tags: VM (a VM to protect), REPLICA (a DR/CR copy Cairn made, tag cairn:replica), RESTORED (made by a restore, cairn:restored), HEALTH_CHECK (the temporary VM of a health check, cairn:health-check), EXCLUDED (never backed up on purpose, cairn:no-bak). Only VM counts as unprotected when it lacks a recent restore point.",
  ],
];
for (const [enumObject, name, description] of enums) registerEnumType(enumObject, { name, description });
