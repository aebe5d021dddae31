/** What each backup mode needs (the server's MODE_RULES, server/services/job-input.ts), and how to explain it. */
import type { BackupMode } from "./api/operations-jobs.js";

export type RetentionField = "exportRetention" | "copyRetention" | "snapshotRetention";

export interface ModeRules {
  label: string;
  explanation: string;
  remotes: boolean;
  srs: boolean;
  /** The retention that must be at least 1 for this mode; null: the mode keeps nothing (VERIFY). */
  retention: RetentionField | null;
  /** The mode snapshots VMs: quiesce, the health check and snapshot retention apply. */
  snapshots: boolean;
  /** verifyOlderThanDays applies (VERIFY). */
  verifyOlderThanDays: boolean;
  /** XVA compression applies (FULL, DISASTER_RECOVERY). */
  compression: boolean;
  /** fullInterval applies (DELTA). */
  fullInterval: boolean;
  /** The job selects pools, not VMs, and may include Cairn's configuration (METADATA). */
  pools?: boolean;
}

export const MODES: Record<BackupMode, ModeRules> = {
  DELTA: {
    label: "Delta backup",
    explanation:
      "A full backup first, then only the blocks that changed, as VHD chains on remotes. Small and fast; restores read the chain.",
    remotes: true,
    srs: false,
    retention: "exportRetention",
    compression: false,
    fullInterval: true,
    snapshots: true,
    verifyOlderThanDays: false,
  },
  FULL: {
    label: "Full backup",
    explanation: "A complete XVA export of each VM to remotes, every run. Simple and self-contained, but every run moves the whole VM.",
    remotes: true,
    srs: false,
    retention: "exportRetention",
    compression: true,
    fullInterval: false,
    snapshots: true,
    verifyOlderThanDays: false,
  },
  ROLLING_SNAPSHOT: {
    label: "Rolling snapshot",
    explanation: "Snapshots kept on the VM's own pool: instant to take and restore, but they die with the pool's storage.",
    remotes: false,
    srs: false,
    retention: "snapshotRetention",
    compression: false,
    fullInterval: false,
    snapshots: true,
    verifyOlderThanDays: false,
  },
  DISASTER_RECOVERY: {
    label: "Disaster recovery",
    explanation: "A full copy of each VM onto other SRs, ready to start if the original is lost.",
    remotes: false,
    srs: true,
    retention: "copyRetention",
    compression: true,
    fullInterval: false,
    snapshots: true,
    verifyOlderThanDays: false,
  },
  CONTINUOUS_REPLICATION: {
    label: "Continuous replication",
    explanation: "Copies each VM onto other SRs, sending only the changes after the first run: replicas close to up to date.",
    remotes: false,
    srs: true,
    retention: "copyRetention",
    compression: false,
    fullInterval: false,
    snapshots: true,
    verifyOlderThanDays: false,
  },
  VERIFY: {
    label: "Verify",
    explanation:
      "Reads the restore points of the selected VMs on the ticked remotes end to end and checks every checksum, without touching a pool: a damaged backup is found before the day it is needed.",
    remotes: true,
    srs: false,
    retention: null,
    compression: false,
    fullInterval: false,
    snapshots: false,
    verifyOlderThanDays: true,
  },
  MIRROR: {
    label: "Mirror",
    explanation:
      "Copies the restore points of one remote (the source) to the ticked remotes, without touching a pool: off-site copies. Only what a target lacks is copied, delta chains whole, each file checked; each target keeps its own retention.",
    remotes: true,
    srs: false,
    retention: "exportRetention",
    compression: false,
    fullInterval: false,
    snapshots: false,
    verifyOlderThanDays: false,
  },
  METADATA: {
    label: "Metadata",
    explanation:
      "Backs up each selected pool's database (its VMs, networks and SRs as XAPI records them) and Cairn's own configuration to the ticked remotes. A pool's metadata restores onto that pool; the configuration restores into a new Cairn after a disaster.",
    remotes: true,
    srs: false,
    retention: "exportRetention",
    compression: false,
    fullInterval: false,
    snapshots: false,
    verifyOlderThanDays: false,
    pools: true,
  },
};

export const RETENTION_LABELS: Record<RetentionField, { label: string; help: string }> = {
  exportRetention: {
    label: "Backups kept on each remote",
    help: "Older backups of this schedule are deleted (delta chains are merged) after a run.",
  },
  copyRetention: {
    label: "Replicas kept on each SR",
    help: "Older replicas of this schedule are deleted from the target SRs after a run.",
  },
  snapshotRetention: {
    label: "Snapshots kept on the pool",
    help: "Older snapshots of this schedule are deleted from the VM after a run. 0 keeps none.",
  },
};
