/**
 * A full copy of a backup snapshot into every target SR at once: one `GET /export` of the snapshot (compressed by the host
 * when the job asks), forked into one `PUT /import/?sr_id=` per target (a failing target is dropped with a warning, the
 * others go on), then each imported VM is made a replica (named, tagged, marked, start blocked). Used by DR on every run
 * and by CR for its first (or a fresh) full.
 *
 * Each imported VM carries `cairn:import:run` = the run from the moment XAPI creates it until its replica is recorded (the
 * caller removes the mark then): what a killed process leaves is found by the interrupted-run cleanup. A VM seen being
 * created on a target that then failed (or on every target, after a cancel) is destroyed here if XAPI did not undo it.
 */
import { chainStreams } from "../../streams/stream-chain.js";
import type { Readable } from "node:stream";
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { ReplicaMarks } from "../../xapi/replica-operations.js";
import type { VmBackupContext } from "../backup/backup-context.js";
import { byteMeter } from "../../streams/byte-meter.js";
import { importXva } from "../restore/restore-import.js";
import type { ReplicaTarget } from "./replica-targets.js";
import { transferToTargets, type LiveTarget } from "../writers/target-transfer.js";
import type { TaskContext } from "../task-context.js";

export interface FullCopyResult {
  /** The replica made on each target that succeeded. */
  replicas: Map<ReplicaTarget, XapiRecord>;
  bytes: number;
}

export async function copyFullReplica(
  ctx: VmBackupContext,
  snapshotRef: string,
  targets: ReplicaTarget[],
  replica: (target: ReplicaTarget) => { name: string; description: string; marks: ReplicaMarks },
): Promise<FullCopyResult> {
  const snapshot = ctx.ops.getRecord(snapshotRef);
  const expectedBytes = snapshot ? ctx.ops.disks(snapshot).reduce((sum, d) => sum + d.virtualSize, 0) : 0;
  const imported = new Map<LiveTarget, { target: ReplicaTarget; vmRef: string }>();
  const created = new Map<LiveTarget, string[]>();
  const live: LiveTarget[] = targets.map((target) => {
    const entry: LiveTarget = {
      name: target.name,
      alive: true,
      write: async (stream: Readable, signal: AbortSignal) => {
        const result = await importXva({
          connection: target.replicas.connection,
          srRef: target.srRef,
          body: stream,
          expectedBytes,
          task: withoutProgress(ctx.task),
          signal,
          onBytes: () => undefined,
          runId: ctx.runId,
          onVmCreated: (ref) => created.set(entry, [...(created.get(entry) ?? []), ref]),
        });
        imported.set(entry, { target, vmRef: result.vmRefs[0] });
        for (const extra of result.vmRefs.slice(1)) await target.replicas.destroyVm(extra);
        return result.bytes;
      },
    };
    return entry;
  });

  const exportTask = await ctx.task.child("export", `export ${ctx.vm.name} as XVA (${ctx.settings.compression.toLowerCase()}) to ${targets.length} SR(s)`);
  let bytes = 0;
  try {
    const { body, done } = await ctx.ops.exportXva(snapshotRef, ctx.settings.compression);
    const onAbort = () => body.destroy(new Error(`export stopped: ${String(ctx.signal.reason ?? "cancelled")}`));
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    const meter = byteMeter((sent, delta) => {
      const fraction = expectedBytes > 0 ? Math.min(0.99, sent / expectedBytes) : 0;
      exportTask.progress(fraction, sent);
      ctx.reportProgress?.(fraction);
      ctx.addTransferred(delta);
    });
    const source = chainStreams(body, meter);
    try {
      await transferToTargets(source, live, { vmTask: ctx.task, what: "XVA", expectedBytes, signal: ctx.signal });
      if (!live.some((t) => t.alive)) {
        body.destroy();
        throw new Error(`every target SR failed (${live.map((t) => `${t.name}: ${(t.error as Error | undefined)?.message ?? "failed"}`).join("; ")})`);
      }
      await done.catch((error) => {
        throw new Error(`XAPI's export task failed: ${(error as { code?: string }).code ?? (error as Error).message}`, { cause: error });
      });
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
    bytes = meter.bytes;
    await exportTask.succeed({ bytes }, bytes);
  } catch (error) {
    // Imports that completed while another part failed are not replicas: remove them.
    for (const { target, vmRef } of imported.values()) await target.replicas.destroyVm(vmRef).catch((e) => ctx.task.warn(`the imported VM ${vmRef} on ${target.name} could not be removed (${(e as Error).message}): remove it by hand`));
    await removeUnfinished(ctx, live, targets, created, new Set());
    if (!ctx.signal.aborted) await exportTask.fail(error);
    throw error;
  }
  await removeUnfinished(ctx, live, targets, created, new Set([...imported].filter(([entry]) => entry.alive).map(([, i]) => i.vmRef)));

  const replicas = new Map<ReplicaTarget, XapiRecord>();
  for (const [entry, { target, vmRef }] of imported) {
    if (!entry.alive) continue;
    try {
      replicas.set(target, await target.replicas.makeReplica(vmRef, replica(target)));
    } catch (error) {
      await ctx.task.warn(`${target.name} dropped: the imported VM could not be made a replica (${(error as Error).message})`);
      await target.replicas.destroyVm(vmRef).catch((e) => ctx.task.warn(`the imported VM ${vmRef} could not be removed (${(e as Error).message}): remove it by hand`));
    }
  }
  return { replicas, bytes };
}

/** Destroys the VMs seen being created by imports that did not complete (XAPI normally undid them already). */
async function removeUnfinished(ctx: VmBackupContext, live: LiveTarget[], targets: ReplicaTarget[], created: Map<LiveTarget, string[]>, complete: Set<string>): Promise<void> {
  for (const [index, entry] of live.entries()) {
    const target = targets[index];
    for (const vmRef of created.get(entry) ?? []) {
      if (complete.has(vmRef)) continue;
      await target.replicas.destroyVm(vmRef).catch((e) => ctx.task.warn(`the half-imported VM ${vmRef} on ${target.name} could not be removed (${(e as Error).message}): remove it by hand`));
    }
  }
}

/** The task, with progress left to the transfer tasks (the import reports its own bytes, which the transfer task already shows). */
function withoutProgress(task: TaskContext): TaskContext {
  return Object.assign(Object.create(task) as TaskContext, { progress: () => undefined });
}
