/**
 * Immutable backups (FORMAT.md, "Immutability"): a remote with an immutability window protects every file of a backup
 * once it is complete, until `cairn.immutableUntil`; retention, merges and removal leave it alone until then, and lift an
 * ended protection (LOCAL's attribute) just before they delete or merge.
 */
import type { Remote } from "../remotes/remote.js";
import { blockChecksumsPathOf, resolveInVmDir } from "./layout.js";
import { type BackupMetadata, filesOfMetadata, immutableUntilOf } from "./metadata.js";
import type { MetadataEntry, VmFolderScan } from "./scanner.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** The end of a backup's window: the backup's time plus the remote's window, or undefined without one. */
export function immutableUntilFor(remote: Remote, backupTime: number): Date | undefined {
  const days = remote.immutabilityDays ?? 0;
  return days > 0 ? new Date(backupTime + days * DAY_MS) : undefined;
}

/** Whether a backup is still protected at `now`. */
export function isProtectedAt(metadata: BackupMetadata | undefined, now: Date): boolean {
  const until = immutableUntilOf(metadata);
  return until !== undefined && until.getTime() > now.getTime();
}

/** Every remote path of a backup: its metadata, its data files and their block checksums. */
export function backupFilePaths(vmUuid: string, entry: Pick<MetadataEntry, "path" | "metadata">): string[] {
  const paths = [entry.path];
  for (const relative of entry.metadata ? filesOfMetadata(entry.metadata) : []) {
    try {
      const data = resolveInVmDir(vmUuid, relative);
      paths.push(data);
      if (data.endsWith(".vhd")) paths.push(blockChecksumsPathOf(data));
    } catch {
      // A path outside the folder is the scanner's problem to report; nothing of it is ours to protect or release.
    }
  }
  return paths;
}

/** "kept web-01's backup of 2026-12-01 22:00:03 UTC: immutable until 2026-12-31 22:00:03 UTC" */
export function keptImmutableWarning(entry: Pick<MetadataEntry, "timestamp" | "metadata">, vmUuid: string): string {
  const vm = vmNameOf(entry.metadata, vmUuid);
  const until = immutableUntilOf(entry.metadata);
  return `kept ${vm}'s backup of ${readableTime(entry.timestamp)}: immutable until ${until ? readableTime(until.getTime()) : "unknown"}`;
}

export function vmNameOf(metadata: BackupMetadata | undefined, vmUuid: string): string {
  const label = (metadata?.vm as { name_label?: unknown } | undefined)?.name_label;
  return typeof label === "string" && label !== "" ? label : `VM ${vmUuid}`;
}

/** A time as people read it, in UTC (the run's warnings go to people in any time zone). */
export function readableTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/**
 * Lifts the protection of every backup of a scanned folder whose window has ended at `now` (their files may be deleted or
 * merged next). Backups still protected, and those that never were, are left as they are.
 */
export async function releaseEndedProtections(remote: Remote, scan: Pick<VmFolderScan, "vmUuid" | "entries">, now: Date): Promise<void> {
  const ended = scan.entries.filter((entry) => immutableUntilOf(entry.metadata) !== undefined && !isProtectedAt(entry.metadata, now));
  await releaseEnded(
    remote,
    ended.flatMap((entry) => backupFilePaths(scan.vmUuid, entry)),
  );
}

/**
 * Lifts ended protections (LOCAL's attribute) on these files, just before they are deleted or merged; a no-op where the
 * server ends them itself (S3). Only for backups whose `immutableUntil` has passed: the caller checks.
 */
export async function releaseEnded(remote: Remote, paths: string[]): Promise<void> {
  if (paths.length === 0 || remote.releaseProtection === undefined) return;
  await remote.releaseProtection(paths);
}
