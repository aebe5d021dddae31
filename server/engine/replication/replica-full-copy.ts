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
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { VmBackupContext } from "../backup/backup-context.js";
import { byteMeter } from "../../streams/byte-meter.js";
import type { ReplicaTarget } from "./replica-targets.js";
import { TargetSet } from "../writers/target-set.js";
import { ReplicaImportWriter, type ReplicaNaming } from "./replica-import-writer.js";
import { xapiErrorCode } from "../../xapi/pool-connection.js";

export interface FullCopyResult {
  /** The replica made on each target that succeeded. */
  replicas: Map<ReplicaTarget, XapiRecord>;
  bytes: number;
}

export async function copyFullReplica(
  ctx: VmBackupContext,
  snapshotRef: string,
  targets: ReplicaTarget[],
  replica: ReplicaNaming,
): Promise<FullCopyResult> {
  const snapshot = ctx.ops.getRecord(snapshotRef);
  const expectedBytes = snapshot ? ctx.ops.disks(snapshot).reduce((sum, d) => sum + d.virtualSize, 0) : 0;
  const set = new TargetSet(
    targets.map((target) => new ReplicaImportWriter(ctx, target, expectedBytes)),
    { task: ctx.task, signal: ctx.signal },
  );
  try {
    await set.prepare();
    const exportTask = await ctx.task.child(
      "export",
      `export ${ctx.vm.name} as XVA (${ctx.settings.compression.toLowerCase()}) to ${targets.length} SR(s)`,
    );
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
        await set.transfer(source, undefined, { what: "XVA", expectedBytes });
        if (set.live.length === 0) {
          body.destroy();
          throw set.failure();
        }
        await done.catch((error) => {
          throw new Error(`XAPI's export task failed: ${xapiErrorCode(error)}`, { cause: error });
        });
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
      bytes = meter.bytes;
      await exportTask.succeed({ bytes }, bytes);
    } catch (error) {
      if (!ctx.signal.aborted) await exportTask.fail(error);
      throw error;
    }
    const replicas = new Map<ReplicaTarget, XapiRecord>();
    await set.commit(replica, async (writer, record) => {
      replicas.set(writer.target, record);
    });
    return { replicas, bytes };
  } finally {
    // Imports that did not become replicas (a target dropped, a failed export, a cancel) are removed.
    await set.abortUncommitted();
  }
}
