/**
 * What the VMs pages say about a VM: its role in words, whether it is protected (its newest good restore point against the
 * target of the schedules covering it), which jobs select it now (the server's selection rules, vm-selection.ts), and
 * where and how sound each restore point is.
 */
import { NO_BACKUP_TAG, previewSmartSelection } from "./vm-selection.js";
import { formatDuration } from "./format.js";

export type ProtectionState = "PROTECTED" | "UNPROTECTED" | "NOT_EXPECTED";

export const PROTECTION_LABELS: Record<ProtectionState, string> = {
  PROTECTED: "Protected",
  UNPROTECTED: "Unprotected",
  NOT_EXPECTED: "Not expected",
};

export const ROLE_LABELS: Record<string, string> = {
  VM: "VM",
  REPLICA: "Replica",
  RESTORED: "Restored",
  HEALTH_CHECK: "Health check",
  EXCLUDED: "Excluded",
};

/** Why a VM of another role than VM has no restore point of its own, and needs none. */
const NOT_EXPECTED_REASONS: Record<string, string> = {
  REPLICA: "a replica Cairn keeps of another VM: its source VM's backups protect it",
  RESTORED: "a VM Cairn restored: add it to a job to protect it as a VM of its own",
  HEALTH_CHECK: "the temporary VM of a health check, destroyed when the check ends",
  EXCLUDED: `tagged ${NO_BACKUP_TAG}: never backed up, on purpose`,
};

/** With no schedule covering a VM, a restore point younger than this counts (the Overview's rule). */
const UNSCHEDULED_HOURS = 24;

export interface ProtectionInput {
  role: string;
  /** Seconds since the newest good restore point (null: none). */
  ageSeconds: number | null;
  /** The tightest interval of the enabled schedules of the enabled jobs covering the VM (null: none). */
  targetSeconds: number | null;
  /** Lateness allowed on top of the target. */
  graceSeconds: number;
}

export interface Protection {
  state: ProtectionState;
  /** One sentence for people: why this state. */
  summary: string;
}

/**
 * A VM of role VM is protected when its newest good restore point is within its schedules' target (plus grace), or, with
 * no schedule covering it, younger than 24 hours; Cairn's own VMs and VMs tagged cairn:no-bak are not expected to be.
 */
export function protectionOf({ role, ageSeconds, targetSeconds, graceSeconds }: ProtectionInput): Protection {
  if (role !== "VM") return { state: "NOT_EXPECTED", summary: `Not backed up: ${NOT_EXPECTED_REASONS[role] ?? "not a VM to protect"}.` };
  if (ageSeconds === null) {
    return {
      state: "UNPROTECTED",
      summary:
        targetSeconds === null
          ? "Never backed up, and no scheduled job selects it: add it to a job."
          : "No good restore point yet: run its job now, or wait for its schedule.",
    };
  }
  const age = formatDuration(ageSeconds);
  if (targetSeconds === null) {
    return ageSeconds <= UNSCHEDULED_HOURS * 3600
      ? { state: "PROTECTED", summary: `Backed up ${age} ago, but no scheduled job selects it: add it to a job with a schedule.` }
      : { state: "UNPROTECTED", summary: `Last good restore point ${age} ago, and no scheduled job selects it: add it to a job.` };
  }
  const every = formatDuration(targetSeconds);
  return ageSeconds <= targetSeconds + graceSeconds
    ? { state: "PROTECTED", summary: `Last good restore point ${age} ago; its schedules ask for one every ${every}.` }
    : {
        state: "UNPROTECTED",
        summary: `Late: last good restore point ${age} ago, its schedules ask for one every ${every}. Check its job's last runs.`,
      };
}

export interface SelectableVm {
  uuid: string;
  name: string;
  tags: readonly string[];
  powerState: string;
  pool: { id: string } | null;
}

export interface SelectingJob {
  id: string;
  mode: string;
  selection: {
    vmUuids: readonly string[];
    smart: {
      poolIds: readonly string[];
      tagsAll: readonly string[];
      tagsAny: readonly string[];
      tagsNone: readonly string[];
      powerStates: readonly string[];
    } | null;
  };
}

/**
 * The jobs whose selection takes this VM now (a run starting now would back it up), VERIFY jobs aside: they make no
 * restore point. Explicit uuids and smart patterns alike leave out a VM tagged cairn:no-bak, as the server does.
 */
export function jobsSelecting<J extends SelectingJob>(vm: SelectableVm, jobs: readonly J[]): J[] {
  return jobs.filter((job) => {
    // METADATA jobs select pools, and back up their databases, not their VMs.
    if (job.mode === "VERIFY" || job.mode === "METADATA") return false;
    if (job.selection.smart) return previewSmartSelection(job.selection.smart, [vm]).selected.length === 1;
    return job.selection.vmUuids.includes(vm.uuid) && !vm.tags.includes(NO_BACKUP_TAG);
  });
}

export const KIND_LABELS: Record<string, string> = {
  XVA: "Full (XVA)",
  VHD_CHAIN: "Delta (VHD)",
  SNAPSHOT: "Snapshot",
  REPLICA: "Replica",
};

/** A kind in a sentence: "this one is a snapshot". */
export const KIND_WORDS: Record<string, string> = {
  XVA: "a full backup (XVA)",
  VHD_CHAIN: "a delta backup (VHD)",
  SNAPSHOT: "a snapshot",
  REPLICA: "a replica",
};

export interface PlacePool {
  id: string;
  name: string;
  srs: readonly { uuid: string; name: string }[];
}

/** The remote's name, or the name of the SR holding a snapshot or replica (its uuid's start when no pool shows it). */
export function shortPlaceOf(point: { remote: { name: string } | null; sr: string | null }, pools: readonly PlacePool[]): string {
  if (point.remote) return point.remote.name;
  if (!point.sr) return "unknown place";
  const sr = pools.flatMap((pool) => pool.srs).find((candidate) => candidate.uuid === point.sr);
  return sr ? sr.name : `SR ${point.sr.slice(0, 8)}…`;
}

/** Where a restore point is: its remote, or the SR (and its pool) holding a snapshot or replica. */
export function placeOf(point: { remote: { name: string } | null; sr: string | null }, pools: readonly PlacePool[]): string {
  if (point.remote) return `remote ${point.remote.name}`;
  if (!point.sr) return "unknown place";
  for (const pool of pools) {
    const sr = pool.srs.find((candidate) => candidate.uuid === point.sr);
    if (sr) return `SR ${sr.name} (pool ${pool.name})`;
  }
  return `SR ${point.sr.slice(0, 8)}… (in no connected pool)`;
}

export interface Verdict {
  /** Known broken: a failed health check or a damaged verify; it does not count as protection. */
  bad: boolean;
  words: string;
}

/** The last health check and verify of a restore point, in words. */
export function verdictOf(point: { verification: { status: string }; integrity: { status: string } }): Verdict {
  if (point.verification.status === "FAILED") return { bad: true, words: "✗ health check failed" };
  if (point.integrity.status === "DAMAGED") return { bad: true, words: "✗ damaged" };
  if (point.integrity.status === "REPAIRED") return { bad: false, words: "✓ verified (repaired)" };
  if (point.integrity.status === "OK") return { bad: false, words: "✓ verified" };
  if (point.verification.status === "OK") return { bad: false, words: "✓ booted in a health check" };
  return { bad: false, words: "not checked" };
}

/** `["prod", "web"]` → "prod, web"; none → "no tag". */
export function tagList(tags: readonly string[]): string {
  return tags.length === 0 ? "no tag" : tags.join(", ");
}
