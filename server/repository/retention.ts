import type { Clock } from "../domain/clock.js";
import { type GfsPolicy, decideRetention, hasGfs } from "../domain/gfs-retention.js";
import type { Remote } from "../remotes/remote.js";
import { XO_CACHE_NAME, resolveInVmDir, vmDir } from "./layout.js";
import { LOCK_EXPIRY_MS, type VmLockOptions, acquireVmLock } from "./lock.js";
import { isProtectedAt, keptImmutableWarning, readableTime, releaseEndedProtections, vmNameOf } from "./immutability.js";
import { filesOfMetadata, immutableUntilOf } from "./metadata.js";
import { RepositoryError, RepositoryErrorReason } from "./repository-error.js";
import { remoteNow } from "./remote-clock.js";
import { type MetadataEntry, type VmFolderScan, scanVmFolder } from "./scanner.js";
import {
  type MergeStepListener,
  type MergedVhd,
  changeGuard,
  removeUnreferencedFiles,
  resumeMerges,
  unreadableProblem,
} from "./unreferenced-files.js";
import { messageOf } from "../errors.js";

export interface RetentionOptions {
  vmUuid: string;
  jobId: string;
  scheduleId: string;
  /** How many restorable backups of this schedule to keep, newest first (XO's exportRetention). 0 removes them all. */
  keep: number;
  /**
   * GFS retention besides the newest `keep` (server/domain/gfs-retention.ts): every backup it keeps stays, and the chains
   * of those that are deltas stay whole (what they build on is merged into them, as for the newest ones).
   */
  gfs?: GfsRetention;
  /** The VM folder lock's options (owner: the run id). */
  lock?: VmLockOptions;
  /** Unreferenced files not of a backup removed by this call go only past this age. @default {@link LOCK_EXPIRY_MS} */
  minAgeMs?: number;
  /** Progress of merges; an error thrown stops that merge as a crash would (the next call resumes it). */
  onMergeStep?: MergeStepListener;
  /** The run's cancellation: stops between two deletes or two merged blocks (the next call finishes the work). */
  signal?: AbortSignal;
  /**
   * Called with the metadata paths about to be deleted, before the first is: an index of restore points unlists them
   * here, so that a crash in the middle never leaves listed a backup the remote no longer holds (a backup unlisted and not
   * yet deleted is listed again by a scan, and removed by the next retention).
   */
  onRemoving?: (metadataPaths: string[]) => Promise<void>;
  /**
   * Where "now" is read for file ages: the remote's time by default (file times are the remote's), or a {@link Clock} a test
   * moves by hand. @default {@link remoteNow}
   */
  clock?: Clock | (() => Promise<Date>);
}

/** A schedule's GFS policy, and the instant whose day, week, month and year count as the current ones. */
export type GfsRetention = Omit<GfsPolicy, "keepLast"> & {
  /** @default now, by this machine's clock (calendar periods are Cairn's, not the remote's) */
  now?: Date;
};

export interface RetentionResult {
  /** Metadata paths of the backups removed. */
  deleted: string[];
  /** Data files deleted (XVAs, VHDs no kept backup needs). */
  deletedFiles: string[];
  /** VHDs merged into their child so the kept backups still restore. */
  merged: MergedVhd[];
  /**
   * Things left for later (a merge that failed or needs a LOCAL remote, a file that could not be read: then nothing at all
   * was changed); never a broken chain.
   */
  problems: string[];
}

/**
 * Keeps the newest `keep` restorable backups of one schedule of one job for one VM, and those its GFS policy keeps (`gfs`),
 * and removes the others (incomplete backups of that schedule older than the oldest of the newest `keep` go too). Under the
 * VM folder's lock (maintenance: restores
 * holding a lease keep it out, and it keeps them out):
 * 1. interrupted merges are finished first (their state files);
 * 2. the metadata of each removed backup is deleted (from here it is no restore point);
 * 3. data files no metadata references are deleted, except a VHD a kept backup's chain goes through: that one is merged
 *    into its child (mergeVhdChain, parent into child), so every kept backup still restores. Other schedules' backups of
 *    the same job share the disk folders and are kept intact: only references count.
 * Fails closed: if any metadata or VHD of the folder cannot be read, nothing is deleted or merged (a problem says which
 * file and why). Every decision comes from one listing of the folder, read once under the lock. A crash at any point
 * leaves a repository where every listed backup restores; the next call finishes the work.
 * @throws RepositoryError LOCKED when a writer, the cleaner, another retention or a restore holds the VM
 */
export async function applyRetention(remote: Remote, options: RetentionOptions): Promise<RetentionResult> {
  const { vmUuid, jobId, scheduleId, keep, gfs } = options;
  if (!Number.isSafeInteger(keep) || keep < 0) throw new Error(`keep must be a whole number >= 0, got ${keep}`);
  // A bad policy is refused before the lock is taken, not in the middle of the work.
  if (gfs) decideRetention([], { ...gfs, keepLast: keep }, gfs.now ?? new Date());
  return removeAndTidy(
    remote,
    vmUuid,
    `retention of schedule ${scheduleId} of job ${jobId}`,
    (entries) => backupsToRemove(entries, jobId, scheduleId, keep, gfs),
    options,
  );
}

/**
 * Removes one backup (`removeRestorePoint`): its metadata first, then what no kept backup needs, merging a VHD that kept
 * backups build on into its child, exactly as retention does. Removing a backup that is not there is not an error.
 * @throws RepositoryError LOCKED when a writer, the cleaner, a retention or a restore holds the VM
 */
export async function removeBackup(
  remote: Remote,
  options: { vmUuid: string; metadataPath: string } & TidyOptions,
): Promise<RetentionResult> {
  return removeAndTidy(
    remote,
    options.vmUuid,
    `removal of ${options.metadataPath}`,
    (entries) => entries.filter((entry) => entry.path === options.metadataPath),
    { ...options, refuseImmutable: true },
  );
}

type TidyOptions = Pick<RetentionOptions, "lock" | "minAgeMs" | "onMergeStep" | "signal" | "clock" | "onRemoving"> & {
  /** A chosen backup still immutable is refused (a removal asked by a person) rather than kept with a warning (retention). */
  refuseImmutable?: boolean;
};

/** Under the VM folder's lock: finish interrupted merges, delete the chosen metadata, then the files nothing needs any more. */
async function removeAndTidy(
  remote: Remote,
  vmUuid: string,
  purpose: string,
  choose: (entries: MetadataEntry[]) => MetadataEntry[],
  options: TidyOptions,
): Promise<RetentionResult> {
  const lock = await acquireVmLock(remote, vmUuid, purpose, { ...options.lock, maintenance: true, signal: options.signal });
  try {
    const guard = changeGuard(lock, options.signal);
    const signal = options.signal ? AbortSignal.any([options.signal, lock.signal]) : lock.signal;
    const result: RetentionResult = { deleted: [], deletedFiles: [], merged: [], problems: [] };
    let scan = await scanVmFolder(remote, vmUuid);
    if (scan.unreadable.length > 0) return { ...result, problems: [unreadableProblem(scan), ...otherProblems(scan)] };
    // One "now" for every immutability decision and file age of this call, by the remote's clock unless a test injects one.
    const now = await retentionNow(remote, vmUuid, options.clock);
    const chosenImmutable = choose(scan.entries).filter((entry) => isProtectedAt(entry.metadata, now));
    if (options.refuseImmutable && chosenImmutable.length > 0) throw immutableRefusal(chosenImmutable[0], vmUuid);
    // Protections whose window has ended are lifted (LOCAL's attribute) before anything is deleted or merged here.
    guard();
    await releaseEndedProtections(remote, scan, now);

    const resumed = await resumeMerges(remote, scan, { onMergeStep: options.onMergeStep, guard, signal });
    result.merged.push(...resumed.merged);
    result.problems.push(...resumed.problems);
    if (resumed.merged.length > 0) {
      scan = await scanVmFolder(remote, vmUuid);
      if (scan.unreadable.length > 0) return { ...result, problems: [...result.problems, unreadableProblem(scan), ...otherProblems(scan)] };
    }

    // Temporaries of writes that failed and could not take their own back (a remote cut mid-write): under this exclusive
    // lock no writer of Cairn can be writing in the folder (a holder stops before its claim may be judged stale), so they
    // go whatever their age instead of waiting for an interrupted-run cleanup that a finished run never gets.
    for (const path of scan.files) {
      if (!remote.isTemporaryName(path)) continue;
      guard();
      await remote.delete(path);
      result.deletedFiles.push(path);
    }
    if (result.deletedFiles.length > 0) scan = withoutFiles(scan, new Set(result.deletedFiles));

    // A backup still immutable is kept whatever the policy says; the run says so.
    const removed = choose(scan.entries).filter((entry) => !isProtectedAt(entry.metadata, now));
    for (const entry of chosenImmutable) result.problems.push(keptImmutableWarning(entry, vmUuid));
    const justRemoved = new Set<string>();
    for (const entry of removed) {
      for (const relative of entry.metadata ? filesOfMetadata(entry.metadata) : []) {
        try {
          justRemoved.add(resolveInVmDir(vmUuid, relative));
        } catch (error) {
          result.problems.push(`${entry.path}: ${messageOf(error)}`);
        }
      }
    }
    if (removed.length > 0) {
      guard();
      await options.onRemoving?.(removed.map((entry) => entry.path));
    }
    for (const entry of removed) {
      guard();
      await remote.delete(entry.path);
      result.deleted.push(entry.path);
    }
    if (removed.length > 0) await remote.delete(`${vmDir(vmUuid)}/${XO_CACHE_NAME}`);

    // The same listing, less the metadata just deleted: never a second, possibly partial, read of the folder.
    const after = withoutEntries(scan, new Set(result.deleted));
    result.problems.push(...otherProblems(after).filter((problem) => !result.problems.includes(problem)));
    const cleaned = await removeUnreferencedFiles(remote, after, {
      justRemoved,
      minAgeMs: options.minAgeMs ?? LOCK_EXPIRY_MS,
      now,
      onMergeStep: options.onMergeStep,
      skipFolders: resumed.blockedFolders,
      guard,
      signal,
    });
    result.deletedFiles.push(...cleaned.deletedFiles);
    result.merged.push(...cleaned.merged);
    result.problems.push(...cleaned.problems);
    return result;
  } finally {
    await lock.release();
  }
}

function immutableRefusal(entry: MetadataEntry, vmUuid: string): RepositoryError {
  const until = immutableUntilOf(entry.metadata);
  return new RepositoryError(
    RepositoryErrorReason.Immutable,
    `${vmNameOf(entry.metadata, vmUuid)}'s backup of ${readableTime(entry.timestamp)} is immutable until ${until ? readableTime(until.getTime()) : "unknown"}: nobody can remove it before then, Cairn included; remove it after that date`,
    { path: entry.path, immutableUntil: until?.toISOString() },
  );
}

function withoutFiles(scan: VmFolderScan, deleted: ReadonlySet<string>): VmFolderScan {
  return { ...scan, files: scan.files.filter((path) => !deleted.has(path)) };
}

function withoutEntries(scan: VmFolderScan, deleted: ReadonlySet<string>): VmFolderScan {
  return {
    ...scan,
    files: scan.files.filter((path) => !deleted.has(path)),
    entries: scan.entries.filter((entry) => !deleted.has(entry.path)),
  };
}

/** The scan's problems other than the unreadable files (said once, by {@link unreadableProblem}). */
function otherProblems(scan: VmFolderScan): string[] {
  return scan.issues.filter((issue) => issue.kind !== "UNREADABLE_FILE").map((issue) => issue.message);
}

/**
 * The schedule's backups older than its `keep`-th newest restorable one (all of them when keep is 0), less those GFS keeps.
 * Incomplete backups (no restore point) go when older than the `keep`-th newest restorable one, GFS or not.
 */
function backupsToRemove(entries: MetadataEntry[], jobId: string, scheduleId: string, keep: number, gfs?: GfsRetention): MetadataEntry[] {
  const mine = entries.filter((entry) => entry.metadata?.jobId === jobId && entry.metadata.scheduleId === scheduleId);
  const restorable = mine.filter((entry) => entry.backup !== undefined);
  if (!gfs || !hasGfs(gfs)) {
    if (keep === 0) return mine;
    if (restorable.length === 0) return [];
    const oldestKept = restorable.slice(-keep)[0].timestamp;
    return mine.filter((entry) => entry.timestamp < oldestKept);
  }
  const decisions = decideRetention(
    restorable.map((entry) => ({ id: entry.path, timestamp: entry.timestamp })),
    { ...gfs, keepLast: keep },
    gfs.now ?? new Date(),
  );
  const kept = new Set(decisions.filter((decision) => decision.keep).map((decision) => decision.id));
  const oldestNewest = keep === 0 ? Number.POSITIVE_INFINITY : (restorable.slice(-keep)[0]?.timestamp ?? Number.NEGATIVE_INFINITY);
  return mine.filter((entry) => (entry.backup === undefined ? entry.timestamp < oldestNewest : !kept.has(entry.path)));
}

/** "Now" for file ages: the injected clock's, or the remote's. */
async function retentionNow(remote: Remote, vmUuid: string, clock: RetentionOptions["clock"]): Promise<Date> {
  if (clock === undefined) return remoteNow(remote, vmDir(vmUuid));
  return typeof clock === "function" ? clock() : clock.now();
}
