/**
 * The target SRs of a replication job (DR, CR), each found in whichever connected pool holds it (the PoolRegistry): the
 * source's pool or another. An SR that is in no connected pool, or is an ISO library, is dropped with a warning; the VM
 * fails only when no target is left.
 */
import { ReplicaOperations } from "../../xapi/replica-operations.js";
import type { VmBackupContext } from "../backup/backup-context.js";

export interface ReplicaTarget {
  /** "<SR name> (<SR uuid first 8>)", for tasks and warnings. */
  name: string;
  srUuid: string;
  srRef: string;
  poolId: string;
  replicas: ReplicaOperations;
}

export async function resolveReplicaTargets(ctx: VmBackupContext): Promise<ReplicaTarget[]> {
  const job = await ctx.db.job.findUnique({ where: { id: ctx.jobId }, select: { srUuids: true } });
  const srUuids = job?.srUuids ?? [];
  if (srUuids.length === 0) throw new Error(`the job has no target SR (srUuids is empty): edit the job and choose at least one`);
  const connections = ctx.registry ? ctx.registry.all() : [ctx.connection];
  const targets: ReplicaTarget[] = [];
  for (const srUuid of srUuids) {
    const found = connections
      .filter((connection) => connection.status === "CONNECTED")
      .map((connection) => ({ connection, sr: connection.records("SR").find((sr) => sr.uuid === srUuid) }))
      .find((candidate) => candidate.sr !== undefined);
    if (!found?.sr) {
      // Its name is not known: no connected pool lists it. The uuid, shortened, is the only way to tell which one it was.
      await ctx.task.warn(
        `A target SR of the job (uuid ${srUuid.slice(0, 8)}…) was skipped: no connected pool has it. Reconnect its pool on the Pools page, or choose another SR in the job.`,
      );
      continue;
    }
    if (found.sr.content_type === "iso") {
      await ctx.task.warn(
        `Target SR "${String(found.sr.name_label)}" was skipped: it is an ISO library and cannot hold VM disks. Choose another SR in the job.`,
      );
      continue;
    }
    targets.push({
      name: `${String(found.sr.name_label)} (${srUuid.slice(0, 8)})`,
      srUuid,
      srRef: found.sr.$ref,
      poolId: found.connection.poolId,
      replicas: new ReplicaOperations(found.connection),
    });
  }
  if (targets.length === 0) throw new Error(`none of the job's ${srUuids.length} target SRs can be reached: nothing was replicated`);
  return targets;
}

/** "YYYY-MM-DD HH:mm:ss UTC": the time in replica and replica snapshot names. */
export function replicaTimeLabel(timestamp: Date): string {
  return `${timestamp.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}
