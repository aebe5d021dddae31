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
  /**
   * On a VM a run is importing (a restore, a DR replica, a CR full): the run's id, set as soon as XAPI has created the VM
   * (it shows in the VM's `current_operations` during the import), removed once the VM is complete (a restored VM configured,
   * a replica recorded as a restore point). A VM still carrying it after its run was interrupted is half-made: the
   * interrupted-run cleanup destroys it with its disks.
   */
  ImportRun: "cairn:import:run",
  /**
   * On a replica VM (DR, CR) and, copied by VM.snapshot, on each replica snapshot: the uuid of the source VM. A replica carries
   * none of the `xo:backup:*` keys of the snapshot it was exported from (they are removed at import), so a replica's
   * snapshots are never taken for the source VM's backup snapshots.
   */
  ReplicaOf: "cairn:replica:of",
  /** On a replica and its snapshots: the job that made it. */
  ReplicaJob: "cairn:replica:job",
  /** On a replica and its snapshots: the schedule of the run that made (DR) or last updated (CR) it; retention counts per schedule. */
  ReplicaSchedule: "cairn:replica:schedule",
  /** On a replica and its snapshots: the uuid of the SR it was written to (retention counts per SR). */
  ReplicaSr: "cairn:replica:sr",
  /** On a replica and its snapshots: the backup time (`YYYYMMDDTHHmmssZ`) of the source snapshot its disks equal. */
  ReplicaDatetime: "cairn:replica:datetime",
  /** On a replica and its snapshots: "DISASTER_RECOVERY" or "CONTINUOUS_REPLICATION". */
  ReplicaMode: "cairn:replica:mode",
  /**
   * On a CR replica and its snapshots: the uuid of the source snapshot (tagged `xo:backup:exported` for the job) whose disks
   * the replica's disks equal: the next run sends the difference against that snapshot.
   */
  ReplicaBase: "cairn:replica:base",
  /**
   * On a CR replica that a run stopped using (it diverged from its base: booted, or its disks written): when (backup
   * timestamp) it was set aside. Cairn never touches such a replica again; its snapshots stay restore points until retention.
   */
  ReplicaSuperseded: "cairn:replica:superseded",
  /**
   * On a CR replica while a run writes a delta onto its disks: that run's id, removed when the update is recorded. Left by an
   * interrupted run, the cleanup checks the replica's disks against its last snapshot: unchanged, it is kept as it is (the
   * next run is a delta); written, its {@link OtherConfigKey.ReplicaBase} is emptied (it matches no base: the next run
   * replaces it with a full).
   */
  ReplicaUpdating: "cairn:replica:updating",
} as const;

export const Tag = {
  /** A VM carrying it is never backed up, whatever the selection says. */
  NoBackup: "cairn:no-bak",
  /** A VM carrying it is not health-checked. */
  NoHealthCheck: "cairn:no-health-check",
  /** Put on every VM Cairn restores. */
  Restored: "cairn:restored",
  /** Put on every replica (DR and CR) and kept by its snapshots. */
  Replica: "cairn:replica",
  /** Put on the temporary VM of a health check (with {@link Tag.NoBackup}), which is destroyed at the end of the check. */
  HealthCheck: "cairn:health-check",
} as const;

/**
 * The reason written in a replica's `blocked_operations` for `start` (VM.add_to_blocked_operations), so that nobody boots it
 * by mistake: a booted replica no longer matches its base and the next CR run must replace it with a full copy.
 */
export const REPLICA_START_BLOCKED_REASON =
  "This is a Cairn replica: starting it would make it diverge from its source. Clone or copy it to use it; or, for a failover, remove this block first (the next replication run then makes a new replica).";
