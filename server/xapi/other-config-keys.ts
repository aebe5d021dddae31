/**
 * Every other_config key and tag Cairn writes to XAPI objects. The `xo:backup:*` keys are Xen Orchestra's, so snapshots made
 * by either product are understood by both (research/xen-orchestra-backups.md §1.4).
 */
export const OtherConfigKey = {
  /** On a backup snapshot: the id of the job that made it. */
  BackupJob: "xo:backup:job",
  /** On a backup snapshot: the schedule of the run that made it. */
  BackupSchedule: "xo:backup:schedule",
  /** On a backup snapshot: the uuid of the VM it is a snapshot of. */
  BackupVm: "xo:backup:vm",
  /** On a backup snapshot: when it was taken, as the backup's timestamp (`YYYYMMDDTHHmmssZ`). */
  BackupDatetime: "xo:backup:datetime",
  /** On a delta snapshot, once every target holds its disks: "true". Only such snapshots may be the base of a delta. */
  BackupExported: "xo:backup:exported",
  /** On a delta snapshot: how many deltas since the last full (0 on a full). */
  DeltaChainLength: "xo:backup:deltaChainLength",
  /** On any snapshot Cairn makes: the run that made it, so an interrupted run's snapshots can be found and removed. */
  CairnRun: "cairn:run",
} as const;

export const Tag = {
  /** A VM carrying it is never backed up, whatever the selection says. */
  NoBackup: "cairn:no-bak",
  /** A VM carrying it is not health-checked. */
  NoHealthCheck: "cairn:no-health-check",
  /** Put on every VM Cairn restores. */
  Restored: "cairn:restored",
} as const;
