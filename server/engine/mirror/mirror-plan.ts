/**
 * Which restore points of one VM a mirror copies to one target, in which order. Pure: it reads two scans.
 *
 * - Only the source's points newer than the target's newest one are copied: a target that keeps fewer points than the
 *   source (its own retention) would otherwise get back, at every run, what its retention has just removed.
 * - Oldest first, delta chains whole: a delta is copied only when the VHD each of its disks builds on is on the target (in
 *   the mirror's own disk folder, where the copies go), or is copied before it in the same run; a parent that is missing
 *   there is the VHD of an older point of the source, which is then copied first (whatever its age), so no chain is cut.
 * - A delta whose parent VHD belongs to no point of the source (the source's retention has not finished merging it) is not
 *   copied: the plan says why, and a later run copies it once the source's merge is done.
 */
import { type ScannedBackup, formatBackupTimestamp, nameOf, parseBackupTimestamp, vdiUuidOfPath } from "../../repository/index.js";

export interface MirrorPlan {
  /** The source's points to copy, oldest first. */
  copies: ScannedBackup[];
  /** Points that cannot be copied now, each with why (one sentence, naming the point). */
  blocked: string[];
}

/**
 * @param source the source's complete points of the VM
 * @param targetTimestamps the times (ms) of the target's points of the VM, whichever job wrote them
 * @param targetVhdNames the target's VHD names of the mirror's disk folders: `<vdi uuid>/<date>.vhd`
 */
export function planMirror(source: ScannedBackup[], targetTimestamps: number[], targetVhdNames: ReadonlySet<string>): MirrorPlan {
  const byTime = new Map(source.map((backup) => [backup.timestamp, backup]));
  const targetTimes = new Set(targetTimestamps);
  const newestOnTarget = targetTimestamps.length > 0 ? Math.max(...targetTimestamps) : Number.NEGATIVE_INFINITY;
  const chosen = new Map<number, ScannedBackup>();
  const blocked: string[] = [];
  const willExist = (vhdName: string) => targetVhdNames.has(vhdName) || [...chosen.values()].some((b) => ownVhdNames(b).has(vhdName));

  /** Adds `backup` and, first, what its chains need; false (and a sentence in `blocked`) when a parent cannot be had. */
  const add = (backup: ScannedBackup, stack: Set<number>): boolean => {
    if (chosen.has(backup.timestamp)) return true;
    if (stack.has(backup.timestamp)) return false; // a loop of parents: damaged lineage, refused by the scan already
    stack.add(backup.timestamp);
    for (const disk of backup.disks) {
      if (disk.chain.length < 2) continue;
      const parentPath = disk.chain[disk.chain.length - 2];
      const parentName = vhdNameOf(parentPath);
      if (parentName && willExist(parentName)) continue;
      const parentTime = parseBackupTimestamp(nameOf(parentPath));
      const parent = parentTime === undefined ? undefined : byTime.get(parentTime);
      if (parent && targetTimes.has(parent.timestamp) && !chosen.has(parent.timestamp)) {
        blocked.push(
          `${label(backup)} builds on ${parentPath}, and the target already holds a point at ${formatBackupTimestamp(parent.timestamp)} written by another job: remove that point from the target, or mirror to another remote`,
        );
        return false;
      }
      if (!parent || !add(parent, stack)) {
        if (!parent)
          blocked.push(
            `${label(backup)} builds on ${parentPath}, which belongs to no restore point of the source (a merge the source's retention has not finished): the next run copies it once that merge is done`,
          );
        return false;
      }
    }
    chosen.set(backup.timestamp, backup);
    return true;
  };

  for (const backup of [...source].sort((a, b) => a.timestamp - b.timestamp)) {
    if (backup.timestamp <= newestOnTarget) continue;
    // A point after one that could not be copied may build on it: `add` then refuses it too, with its own sentence.
    add(backup, new Set());
  }
  return { copies: [...chosen.values()].sort((a, b) => a.timestamp - b.timestamp), blocked };
}

/** `<vdi uuid>/<date>.vhd` of a disk path `.../vdis/<job>/<vdi>/<date>.vhd`. */
export function vhdNameOf(path: string): string | undefined {
  const vdi = vdiUuidOfPath(path);
  return vdi === undefined ? undefined : `${vdi}/${nameOf(path)}`;
}

function ownVhdNames(backup: ScannedBackup): Set<string> {
  return new Set(
    backup.disks.flatMap((disk) => {
      const own = disk.chain[disk.chain.length - 1];
      const name = own === undefined ? undefined : vhdNameOf(own);
      return name ? [name] : [];
    }),
  );
}

function label(backup: ScannedBackup): string {
  return `the restore point of ${formatBackupTimestamp(backup.timestamp)}`;
}
