/**
 * Verifies remote restore points (XVA, VHD_CHAIN) under a run: each one read end to end on its remote and checked against
 * the checksums written with it (server/repository/verify.ts), without touching a pool. Used by the VERIFY run of
 * `verifyRestorePoint` (verify-executor.ts) and by the runs of a VERIFY job (verify-job-executor.ts).
 *
 * Task tree: the run's root > one `verify` task per restore point, "verify <vm> <time> on <remote>", with progress in bytes
 * and the result `{ restorePointId, status, checkedBytes, checkedFiles, problems, repaired, unverifiable }`:
 * - OK: SUCCESS; REPAIRED: SUCCESS with a warning per repair; each file that carries no checksum is a warning too;
 * - DAMAGED: FAILURE, with a message saying what is damaged and that this restore point cannot be trusted;
 * - the verify could not finish (remote unreachable, lease lost, restore point gone from the database): FAILURE with why,
 *   and the restore point's verdict is left as it was.
 * The verdict is written on the RestorePoint row (integrityStatus, verifiedAt, integrityProblems, integrityRepaired).
 * While the restore lease waits for retention or a merge, the task's message says "waiting: <who holds the VM>".
 */
import type { Db } from "../../db/prisma.js";
import type { Logger } from "../../log.js";
import { type BackupVerdict, type IntegrityProblem, localPathsOf, verifyBackup } from "../../repository/index.js";
import type { Remote } from "../../remotes/remote.js";
import type { StoredRemotes } from "../stored-remotes.js";
import { forEachLimited } from "../concurrency.js";
import type { RunContext } from "../run-executor.js";
import type { TaskContext } from "../task-context.js";
import { messageOf } from "../../errors.js";

/** Problems and repairs kept on the restore point's row and in the task's result: the first ones, in the order found. */
export const MAX_RECORDED_PROBLEMS = 100;

/** What a verify reads: a remote restore point's row. */
export interface VerifiablePoint {
  id: string;
  kind: string;
  vmUuid: string;
  vmName: string;
  timestamp: Date;
  sizeBytes: bigint;
  remoteId: string | null;
  path: string | null;
}

export interface VerifyPointsDeps {
  db: Db;
  remotes: StoredRemotes;
  log: Logger;
}

export interface VerifyPointsOptions {
  /** Rewrite what can be rewritten safely (a VHD footer from its intact copy; LOCAL remotes only). */
  repair: boolean;
  /** Restore points verified at once. */
  concurrency: number;
  /** Verify the points of a disabled remote too (a one-off verify a user asked for); else they fail saying it is disabled. */
  allowDisabled?: boolean;
}

/** The end of one restore point's verify: its verdict, or why there is none. */
export type PointOutcome =
  | { point: VerifiablePoint; label: string; verdict: BackupVerdict }
  | { point: VerifiablePoint; label: string; error: string };

export interface VerifySummary {
  outcomes: PointOutcome[];
  /** Labels ("<vm> <time> on <remote>") of the DAMAGED restore points. */
  damaged: string[];
  /** Labels of the restore points whose verify could not finish, with why. */
  failed: string[];
  repaired: string[];
}

/** `2026-12-02T16:45:00Z`: a restore point's time as its files name it (to the second). */
export function pointTime(timestamp: Date): string {
  return timestamp.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Verifies `points` under the run's root task (one child task each), records each verdict on its row and the run's totals
 * (VMs: succeeded when every point of the VM is OK or REPAIRED). Resolves once every point ended; when the run's signal
 * aborts, rethrows its reason and leaves the open tasks to the run machinery (CANCELLED).
 */
export async function verifyRestorePoints(
  deps: VerifyPointsDeps,
  context: RunContext,
  points: VerifiablePoint[],
  options: VerifyPointsOptions,
): Promise<VerifySummary> {
  const { signal } = context;
  const vmUuids = [...new Set(points.map((p) => p.vmUuid))];
  const pointsOfVm = new Map(vmUuids.map((uuid) => [uuid, points.filter((p) => p.vmUuid === uuid).length]));
  const endedOfVm = new Map<string, { ended: number; bad: boolean }>();
  const weight = (point: VerifiablePoint) => Math.max(1, Number(point.sizeBytes));
  const totalWeight = points.reduce((sum, p) => sum + weight(p), 0);
  // Progress is called for every block read: the weighted sum is kept up to date rather than recomputed.
  const fractions = new Map<string, number>();
  let doneWeight = 0;
  const setFraction = (point: VerifiablePoint, fraction: number) => {
    doneWeight += (fraction - (fractions.get(point.id) ?? 0)) * weight(point);
    fractions.set(point.id, fraction);
  };
  let succeeded = 0;
  let failed = 0;
  const report = () =>
    context.report({ vmsSucceeded: succeeded, vmsFailed: failed, progress: totalWeight > 0 ? doneWeight / totalWeight : 1 });
  context.report({ vmsTotal: vmUuids.length, vmUuids });
  report();

  const opened = new Map<string, Promise<{ remote: Remote; name: string }>>();
  const openRemote = (remoteId: string) => {
    let entry = opened.get(remoteId);
    if (!entry) {
      entry = openRemoteById(deps, remoteId, options.allowDisabled === true);
      entry.catch(() => undefined); // awaited by each point of the remote, which reports the error on its task
      opened.set(remoteId, entry);
    }
    return entry;
  };

  const remoteIds = [...new Set(points.map((p) => p.remoteId).filter((id): id is string => id !== null))];
  const remoteNames = new Map(
    (await deps.db.remote.findMany({ where: { id: { in: remoteIds } }, select: { id: true, name: true } })).map((r) => [r.id, r.name]),
  );
  const labelOf = (point: VerifiablePoint) =>
    `${point.vmName} ${pointTime(point.timestamp)} on ${point.remoteId ? (remoteNames.get(point.remoteId) ?? "a removed remote") : "no remote"}`;

  const outcomes: PointOutcome[] = [];
  try {
    await forEachLimited(points, options.concurrency, async (point, index) => {
      if (signal.aborted) return;
      const outcome = await verifyOne(deps, context, point, labelOf(point), openRemote, options.repair, (fraction) => {
        setFraction(point, fraction);
        report();
      });
      outcomes[index] = outcome;
      const bad = "error" in outcome || outcome.verdict.status === "DAMAGED";
      setFraction(point, 1);
      const vm = endedOfVm.get(point.vmUuid) ?? { ended: 0, bad: false };
      vm.ended++;
      vm.bad ||= bad;
      endedOfVm.set(point.vmUuid, vm);
      if (vm.ended === pointsOfVm.get(point.vmUuid)) {
        if (vm.bad) failed++;
        else succeeded++;
      }
      report();
    });
  } finally {
    // A remote that failed to open was reported on each of its points' tasks; one that fails to close changes no verdict.
    for (const entry of opened.values()) {
      await entry.then(
        (r) =>
          r.remote
            .close()
            .catch((error: unknown) => context.log.warn({ err: error, remote: r.name }, "could not close a remote after verifying")),
        () => undefined,
      );
    }
  }
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
  // In the order of `points`, whatever the order they ended in.
  const summary: VerifySummary = { outcomes: outcomes.filter(Boolean), damaged: [], failed: [], repaired: [] };
  for (const outcome of summary.outcomes) {
    if ("error" in outcome) summary.failed.push(`${outcome.label} (${outcome.error})`);
    else if (outcome.verdict.status === "DAMAGED") summary.damaged.push(outcome.label);
    else if (outcome.verdict.status === "REPAIRED") summary.repaired.push(outcome.label);
  }
  return summary;
}

async function openRemoteById(deps: VerifyPointsDeps, remoteId: string, allowDisabled: boolean): Promise<{ remote: Remote; name: string }> {
  const row = await deps.db.remote.findUnique({ where: { id: remoteId } });
  if (!row) throw new Error(`its remote (${remoteId}) was removed`);
  if (!row.enabled && !allowDisabled) throw new Error(`remote ${row.name} is disabled`);
  const remote = deps.remotes.open(row);
  try {
    await remote.open();
  } catch (error) {
    throw new Error(`remote ${row.name} cannot be opened: ${messageOf(error)}`, { cause: error });
  }
  return { remote, name: row.name };
}

async function verifyOne(
  deps: VerifyPointsDeps,
  context: RunContext,
  point: VerifiablePoint,
  label: string,
  openRemote: (remoteId: string) => Promise<{ remote: Remote; name: string }>,
  repair: boolean,
  onFraction: (fraction: number) => void,
): Promise<PointOutcome> {
  const task = await context.root.child("verify", `verify ${label}`, { vmUuid: point.vmUuid });
  const { signal } = context;
  try {
    if (!point.remoteId || !point.path)
      throw new Error(`this ${point.kind} restore point is not a backup on a remote: there is nothing to read`);
    const { remote } = await openRemote(point.remoteId);
    let waiting = false;
    const verdict = await verifyBackup(
      remote,
      { vmUuid: point.vmUuid, metadataPath: point.path },
      {
        repair,
        signal,
        onProgress: (done, total) => {
          if (waiting) {
            waiting = false;
            void task.note(null);
          }
          const fraction = total > 0 ? Math.min(1, done / total) : 0;
          task.progress(fraction, done);
          onFraction(fraction);
        },
        lease: {
          owner: context.run.id,
          onWait: (description) => {
            waiting = true;
            void task.note(`waiting: ${description}`);
          },
        },
      },
    );
    if (waiting) await task.note(null);
    const recorded = withRemotePaths(verdict, remote);
    await recordVerdict(deps, point, recorded, task);
    await endTask(task, point.id, recorded);
    return { point, label, verdict: recorded };
  } catch (error) {
    if (signal.aborted) throw error;
    context.log.warn({ err: error, restorePointId: point.id }, "a restore point's verify could not finish");
    const reason = `the verify could not finish: ${messageOf(error)}`;
    await task.fail(new Error(`${reason}; the restore point's last verdict stands. Try again once the cause is fixed.`), {
      restorePointId: point.id,
      status: null,
    });
    return { point, label, error: messageOf(error) };
  }
}

/** Writes the verdict on the row; a row removed meanwhile (retention) is only a warning. */
async function recordVerdict(deps: VerifyPointsDeps, point: VerifiablePoint, verdict: BackupVerdict, task: TaskContext): Promise<void> {
  const { count } = await deps.db.restorePoint.updateMany({
    where: { id: point.id },
    data: {
      integrityStatus: verdict.status,
      verifiedAt: new Date(),
      integrityProblems: verdict.problems
        .slice(0, MAX_RECORDED_PROBLEMS)
        .map((p) => ({ file: p.file, ...(p.block !== undefined && { block: p.block }), detail: p.detail })),
      integrityRepaired: verdict.repaired.slice(0, MAX_RECORDED_PROBLEMS),
    },
  });
  if (count === 0)
    await task.warn("The restore point was removed from the database during its verify (retention?): its verdict was not recorded.");
}

async function endTask(task: TaskContext, restorePointId: string, verdict: BackupVerdict): Promise<void> {
  const result = {
    restorePointId,
    status: verdict.status,
    checkedBytes: verdict.checkedBytes,
    checkedFiles: verdict.checkedFiles.length,
    problems: verdict.problems.slice(0, MAX_RECORDED_PROBLEMS),
    repaired: verdict.repaired.slice(0, MAX_RECORDED_PROBLEMS),
    unverifiable: verdict.unverifiable.slice(0, MAX_RECORDED_PROBLEMS),
  };
  for (const repaired of verdict.repaired) await task.warn(`Repaired: ${repaired}`);
  for (const unverifiable of verdict.unverifiable) await task.warn(`Not verifiable: ${unverifiable}`);
  task.progress(1, verdict.checkedBytes);
  if (verdict.status === "DAMAGED") await task.fail(new Error(damageMessage(verdict.problems)), result);
  else await task.succeed(result, verdict.checkedBytes);
}

/**
 * What a person reads on a DAMAGED verify: "2 damaged blocks in <file> (blocks 3, 9); <file>: <detail>; restore from
 * another restore point; this one cannot be trusted."
 */
export function damageMessage(problems: IntegrityProblem[]): string {
  const byFile = new Map<string, IntegrityProblem[]>();
  for (const problem of problems) byFile.set(problem.file, [...(byFile.get(problem.file) ?? []), problem]);
  const phrases: string[] = [];
  for (const [file, list] of byFile) {
    const blocks = list.filter((p) => p.block !== undefined).map((p) => p.block as number);
    if (blocks.length > 0) {
      const shown = blocks.slice(0, 10).join(", ") + (blocks.length > 10 ? ` and ${blocks.length - 10} more` : "");
      phrases.push(
        `${blocks.length} damaged block${blocks.length === 1 ? "" : "s"} in ${file} (block${blocks.length === 1 ? "" : "s"} ${shown})`,
      );
    }
    for (const problem of list.filter((p) => p.block === undefined)) phrases.push(`${file}: ${problem.detail}`);
  }
  const shown = phrases.slice(0, 5).join("; ") + (phrases.length > 5 ? `; and ${phrases.length - 5} more problems` : "");
  // What a repair can rewrite (a VHD footer from its intact copy): then the point is not lost for good.
  const repairable = problems.length > 0 && problems.every((p) => p.repairable === true);
  const advice = repairable
    ? "until then, restore from another restore point; this one cannot be trusted as it is."
    : "restore from another restore point; this one cannot be trusted.";
  return `${shown || "damaged"}; ${advice}`;
}

/**
 * The verdict with every path as the remote names it: on a remote whose files are local (LOCAL), the messages of the
 * format layer name the machine's path of a file (`/srv/backups/xo-vm-backups/...`); the API shows paths inside the remote.
 */
function withRemotePaths(verdict: BackupVerdict, remote: Remote): BackupVerdict {
  const local = localPathsOf(remote);
  if (!local) return verdict;
  const root = local("").replace(/\/+$/, "");
  if (root === "") return verdict;
  const strip = (text: string) => text.split(`${root}/`).join("");
  return {
    ...verdict,
    checkedFiles: verdict.checkedFiles.map(strip),
    problems: verdict.problems.map((p) => ({ ...p, file: strip(p.file), detail: strip(p.detail) })),
    repaired: verdict.repaired.map(strip),
    unverifiable: verdict.unverifiable.map(strip),
  };
}
