/**
 * The runs of a VERIFY job (BACKUP runs of a job whose mode is VERIFY: backup-executor.ts hands them here). The job selects
 * VMs as backup jobs do (explicit uuids, also of VMs no connected pool shows any more, or a smart pattern evaluated now; a VM
 * tagged `cairn:no-bak` is left out with a warning), and verifies every XVA and VHD_CHAIN restore point of those VMs on its
 * remotes, in VM name order, oldest point first (verify-restore-points.ts), `concurrency` at once. With
 * `verifyOlderThanDays` > 0, only the points not verified within that many days.
 *
 * Outcome: SUCCESS when every point is OK or REPAIRED; FAILURE when one is DAMAGED or could not be verified (the error
 * names them); SKIPPED when no VM matched or no restore point needed a verify. A disabled remote is left out with a warning.
 */
import type { Prisma } from "../../db/prisma.js";
import { effectiveSettings, type Selection } from "../../domain/job-settings.js";
import { listVms } from "../../xapi/inventory.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import type { RunContext, RunExecutor, RunOutcome } from "../run-executor.js";
import { type VerifyPointsDeps, type VerifySummary, verifyRestorePoints } from "./verify-restore-points.js";
import { resolveSelection, type SelectableVm } from "../backup/vm-selection.js";

const DAY_MS = 24 * 3600 * 1000;

export interface VerifyJobDeps extends VerifyPointsDeps {
  registry: PoolRegistry;
}

export function createVerifyJobExecutor(deps: VerifyJobDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const { run, root } = context;
    if (!run.jobId) return { status: "FAILURE", error: "This run has no job (it was deleted)." };
    const job = await deps.db.job.findUnique({
      where: { id: run.jobId },
      include: { remotes: { include: { remote: { select: { id: true, name: true, enabled: true } } } } },
    });
    if (!job) return { status: "FAILURE", error: "The job of this run was deleted." };
    const settings = effectiveSettings(job.settings);

    const visible: SelectableVm[] = deps.registry.all().flatMap((connection) => listVms(connection));
    const selection = resolveSelection(job.selection as unknown as Selection, visible);
    for (const vm of selection.excluded) await root.warn(`${vm.name} is tagged cairn:no-bak: left out.`);
    const vmUuids = [...selection.vms.map((vm) => vm.uuid), ...selection.missing];
    if (vmUuids.length === 0) return { status: "SKIPPED", error: "No VM matched the job's selection: nothing to verify." };

    const remotes = job.remotes.map((link) => link.remote);
    for (const remote of remotes.filter((r) => !r.enabled))
      await root.warn(`Remote ${remote.name} is disabled: its restore points were not verified.`);
    const remoteIds = remotes.filter((r) => r.enabled).map((r) => r.id);
    if (remoteIds.length === 0) return { status: "FAILURE", error: "Every remote of the job is disabled: nothing was verified." };

    const where: Prisma.RestorePointWhereInput = {
      remoteId: { in: remoteIds },
      vmUuid: { in: vmUuids },
      kind: { in: ["XVA", "VHD_CHAIN"] },
      path: { not: null },
    };
    if (settings.verifyOlderThanDays > 0) {
      const cutoff = new Date(Date.now() - settings.verifyOlderThanDays * DAY_MS);
      where.OR = [{ verifiedAt: null }, { verifiedAt: { lt: cutoff } }];
    }
    const points = await deps.db.restorePoint.findMany({
      where,
      orderBy: [{ vmName: "asc" }, { vmUuid: "asc" }, { timestamp: "asc" }, { id: "asc" }],
    });
    if (points.length === 0) {
      context.report({ vmsTotal: 0, vmUuids, progress: 1 });
      const why =
        settings.verifyOlderThanDays > 0
          ? `every restore point of the selected VMs on the job's remotes was verified within ${settings.verifyOlderThanDays} day${settings.verifyOlderThanDays === 1 ? "" : "s"}`
          : "the selected VMs have no restore point on the job's remotes";
      return { status: "SKIPPED", error: `Skipped: ${why}.` };
    }
    const summary = await verifyRestorePoints(deps, context, points, { repair: false, concurrency: settings.concurrency });
    return outcomeOf(summary, points.length);
  };
}

/** Names at most this many restore points in the run's error; the tasks and the report list them all. */
const NAMED_IN_ERROR = 10;

function outcomeOf(summary: VerifySummary, total: number): RunOutcome {
  const list = (labels: string[], separator: string) =>
    labels.slice(0, NAMED_IN_ERROR).join(separator) +
    (labels.length > NAMED_IN_ERROR ? `${separator}and ${labels.length - NAMED_IN_ERROR} more` : "");
  const parts: string[] = [];
  if (summary.damaged.length > 0) {
    const count = summary.damaged.length;
    parts.push(
      `${count} of ${total} restore point${total === 1 ? "" : "s"} ${count === 1 ? "is" : "are"} damaged and cannot be trusted: ${list(summary.damaged, ", ")}`,
    );
  }
  if (summary.failed.length > 0) parts.push(`${summary.failed.length} could not be verified: ${list(summary.failed, "; ")}`);
  if (parts.length > 0) return { status: "FAILURE", error: `${parts.join(". ")}.` };
  return { status: "SUCCESS" };
}
