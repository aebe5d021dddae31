/**
 * Keeps the RestorePoint rows of a remote in step with what the remote holds: the remote is the source of truth, the rows
 * are its index. After a backup, after retention, and on `scanRemote`, the scanned backups are upserted (by remote and
 * metadata path) and rows whose backup is gone are deleted. Incomplete backups are never indexed: the scanner skips them.
 */
import type { Db } from "../../db/prisma.js";
import { type GfsPolicy, hasGfs } from "../../domain/gfs-retention.js";
import type { Compression } from "../../db/generated/enums.js";
import { RepositoryError, RepositoryErrorReason } from "../../repository/repository-error.js";
import { immutableUntilOf } from "../../repository/metadata.js";
import { applyRetention } from "../../repository/retention.js";
import { scanRepository, type ScannedBackup } from "../../repository/scanner.js";
import type { Remote } from "../../remotes/remote.js";
import type { BackupTarget, VmBackupContext } from "./backup-context.js";

const COMPRESSION: Record<string, Compression> = { none: "NONE", gzip: "GZIP", zstd: "ZSTD" };

export interface IndexResult {
  indexed: number;
  removed: number;
  problems: string[];
  /** Row id by metadata path. */
  ids: Map<string, string>;
}

/** Re-indexes a remote (or one VM folder of it). `runId` is recorded on rows created now. */
export async function indexRemote(
  db: Db,
  remoteId: string,
  remote: Remote,
  options: { vmUuid?: string; runId?: string } = {},
): Promise<IndexResult> {
  const scan = await scanRepository(remote, options.vmUuid ? { vmUuid: options.vmUuid } : {});
  const [jobs, schedules] = await Promise.all([
    db.job.findMany({ where: { id: { in: unique(scan.backups.map((b) => b.jobId)).filter(isUuid) } }, select: { id: true } }),
    db.schedule.findMany({ where: { id: { in: unique(scan.backups.map((b) => b.scheduleId)).filter(isUuid) } }, select: { id: true } }),
  ]);
  const knownJobs = new Set(jobs.map((j) => j.id));
  const knownSchedules = new Set(schedules.map((s) => s.id));
  const ids = new Map<string, string>();
  for (const backup of scan.backups) {
    const data = rowOf(backup, knownJobs, knownSchedules);
    const row = await db.restorePoint.upsert({
      where: { remoteId_path: { remoteId, path: backup.metadataPath } },
      create: { ...data, remoteId, path: backup.metadataPath, runId: options.runId ?? null },
      update: data,
      select: { id: true },
    });
    ids.set(backup.metadataPath, row.id);
  }
  const stale = await db.restorePoint.deleteMany({
    where: {
      remoteId,
      ...(options.vmUuid ? { vmUuid: options.vmUuid } : {}),
      path: { notIn: scan.backups.map((b) => b.metadataPath) },
    },
  });
  return { indexed: scan.backups.length, removed: stale.count, problems: scan.problems, ids };
}

/**
 * For retention and removals: unlists the backups about to be deleted from a remote before they are, so that a crash in
 * the middle never leaves listed a restore point whose metadata is gone (a scan lists again what was not deleted yet).
 */
export function unlistBeforeRemoving(db: Db, remoteId: string): (metadataPaths: string[]) => Promise<void> {
  return async (metadataPaths) => {
    await db.restorePoint.deleteMany({ where: { remoteId, path: { in: metadataPaths } } });
  };
}

/** After a commit: indexes the VM folder and returns the new restore point's id. */
export async function recordRemoteBackup(ctx: VmBackupContext, target: BackupTarget, metadataPath: string): Promise<string> {
  const result = await indexRemote(ctx.db, target.remoteId, target.remote, { vmUuid: ctx.vm.uuid, runId: ctx.runId });
  const id = result.ids.get(metadataPath);
  if (!id) {
    throw new Error(
      `the backup was written to ${target.name} but does not read back as complete: ${result.problems.join("; ") || "unknown reason"}`,
    );
  }
  return id;
}

function rowOf(backup: ScannedBackup, knownJobs: Set<string>, knownSchedules: Set<string>) {
  const chainLength = Math.max(1, ...backup.disks.map((d) => d.chain.length));
  return {
    kind: backup.mode === "full" ? ("XVA" as const) : ("VHD_CHAIN" as const),
    vmUuid: backup.vmUuid,
    vmName: backup.vmName ?? backup.vmUuid,
    timestamp: new Date(backup.timestamp),
    sizeBytes: BigInt(Math.max(0, Math.round(backup.size))),
    jobId: knownJobs.has(backup.jobId) ? backup.jobId : null,
    scheduleId: knownSchedules.has(backup.scheduleId) ? backup.scheduleId : null,
    quiesced: backup.quiesced ?? false,
    compression: COMPRESSION[backup.compression ?? "none"] ?? "NONE",
    chainLength: backup.mode === "full" ? 1 : chainLength,
    disks: backup.disks.map((d) => ({ id: d.vdiUuid, name: d.name ?? d.vdiUuid, virtualSize: d.virtualSize, chain: d.chain })),
    immutableUntil: immutableUntilOf(backup.metadata) ?? null,
  };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}

/** Retention of this schedule on one target (merging deltas so kept points restore), then the index of the VM follows. */
export async function applyRemoteRetention(ctx: VmBackupContext, target: BackupTarget): Promise<void> {
  if (ctx.schedule.exportRetention <= 0 || !ctx.schedule.id) return;
  const gfs = ctx.schedule.gfs && hasGfs(ctx.schedule.gfs) ? ctx.schedule.gfs : undefined;
  const what = `keep ${ctx.schedule.exportRetention}${gfs ? `, and GFS: ${gfsSummary(gfs)}` : ""}`;
  await ctx.task.run("retention", `retention on ${target.name}: ${what}`, async (task) => {
    let result;
    try {
      result = await applyRetention(target.remote, {
        vmUuid: ctx.vm.uuid,
        jobId: ctx.jobId,
        scheduleId: ctx.schedule.id!,
        keep: ctx.schedule.exportRetention,
        // The periods are those of the backup just taken, as retentionPreview computes them for the next run's.
        ...(gfs ? { gfs: { ...gfs, now: ctx.timestamp } } : {}),
        lock: { owner: ctx.runId },
        signal: ctx.signal,
        onRemoving: unlistBeforeRemoving(ctx.db, target.remoteId),
      });
    } catch (error) {
      // A restore, a verify or another job is using this VM's backups: the backup itself is safe; the next run applies
      // the retention (it keeps more than asked meanwhile, never less).
      if (!(error instanceof RepositoryError && error.reason === RepositoryErrorReason.Locked) || ctx.signal.aborted) throw error;
      await task.warn(`retention postponed to the next run: ${error.message.replace(/^LOCKED: /, "")}`);
      return { deleted: 0, merged: 0, postponed: true };
    }
    for (const problem of result.problems) await task.warn(problem);
    const index = await indexRemote(ctx.db, target.remoteId, target.remote, { vmUuid: ctx.vm.uuid });
    return { deleted: result.deleted.length, merged: result.merged.length, restorePoints: index.indexed };
  });
}

/** "the oldest of each of the last 7 days, 4 weeks (Europe/Paris)": for the retention task's name. */
function gfsSummary(gfs: Omit<GfsPolicy, "keepLast">): string {
  const parts = [
    [gfs.days, "day"],
    [gfs.weeks, "week"],
    [gfs.months, "month"],
    [gfs.years, "year"],
  ] as const;
  const counted = parts.filter(([count]) => count > 0).map(([count, unit]) => `${count} ${unit}${count > 1 ? "s" : ""}`);
  return `the oldest of each of the last ${counted.join(", ")} (${gfs.timeZone})`;
}
