/**
 * FULL: snapshot, GET /export of the snapshot (compressed by the host when asked), streamed to every remote at once, each
 * written under a temporary name and renamed when complete; the export is valid only when XAPI's task succeeded (and, when
 * not compressed, the tar ends as a tar must); metadata written last; then retention per schedule, and the snapshot removed
 * unless snapshot retention keeps it.
 */
import { chainStreams } from "../../streams/stream-chain.js";
import type { CommitInput } from "../../repository/backup-writer.js";
import { MANUAL_SCHEDULE_ID, type VmBackupContext, type VmBackupResult } from "./backup-context.js";
import { byteMeter, looksLikeCompleteTar } from "../../streams/byte-meter.js";
import { recordRemoteBackup, applyRemoteRetention } from "./remote-backup-index.js";
import { removeOrKeepRunSnapshot } from "./snapshot-retention.js";
import { takeSnapshot } from "./take-snapshot.js";
import { BackupTargetWriter } from "../writers/backup-target-writer.js";
import { TargetSet } from "../writers/target-set.js";
import { xapiErrorCode } from "../../xapi/pool-connection.js";
import { plainRecord } from "../../xapi/xapi-records.js";

const COMPRESSION_NAME = { NONE: "none", GZIP: "gzip", ZSTD: "zstd" } as const;

export async function fullBackup(ctx: VmBackupContext): Promise<VmBackupResult> {
  const snapshot = await takeSnapshot(ctx);
  const snapshotRecord = ctx.ops.getRecord(snapshot.ref);
  const disks = snapshotRecord ? ctx.ops.disks(snapshotRecord) : [];
  const expectedBytes = disks.reduce((sum, d) => sum + d.virtualSize, 0);
  const targets = new TargetSet(
    ctx.targets.map(
      (target) =>
        new BackupTargetWriter(target, { vmUuid: ctx.vm.uuid, timestamp: ctx.timestamp, mode: "full", jobId: ctx.jobId, runId: ctx.runId }),
    ),
    { task: ctx.task, signal: ctx.signal },
  );
  let exportedBytes = 0;
  let cleaning: Promise<void> | undefined;
  try {
    // Cancelled while the snapshot was being taken: stop here (the finally removes the snapshot).
    if (ctx.signal.aborted) throw new Error(`stopped before the export: ${String(ctx.signal.reason)}`);
    await targets.prepare();

    const exportTask = await ctx.task.child("export", `export ${ctx.vm.name} as XVA (${COMPRESSION_NAME[ctx.settings.compression]})`);
    try {
      const { body, done } = await ctx.ops.exportXva(snapshot.ref, ctx.settings.compression);
      const onAbort = () => body.destroy(new Error(`export stopped: ${String(ctx.signal.reason ?? "cancelled")}`));
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      if (ctx.signal.aborted) onAbort(); // cancelled while the export was being opened: no abort event will come
      const meter = byteMeter((bytes, delta) => {
        const fraction = expectedBytes > 0 ? Math.min(0.99, bytes / expectedBytes) : 0;
        exportTask.progress(fraction, bytes);
        ctx.reportProgress?.(fraction);
        ctx.addTransferred(delta);
      });
      // pipeline, not pipe: when every fork is cut the meter is destroyed, and so must be the export's connection (else
      // XAPI's task waits on a paused body forever and `done` never settles).
      const source = chainStreams(body, meter);
      try {
        await targets.transfer(source, { kind: "xva", sizeHint: expectedBytes }, { what: "XVA", expectedBytes });
        if (targets.live.length === 0) {
          body.destroy();
          throw targets.failure();
        }
        await done.catch((error) => {
          throw new Error(`XAPI's export task failed: ${xapiErrorCode(error)}`, { cause: error });
        });
        if (ctx.settings.compression === "NONE" && !looksLikeCompleteTar(meter.bytes, meter.tail())) {
          throw new Error(`the XVA export ended early (${meter.bytes} bytes, no tar trailer): the connection was probably cut`);
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
      exportedBytes = meter.bytes;
      await exportTask.succeed({ bytes: meter.bytes }, meter.bytes);
    } catch (error) {
      // Stopped (cancel, timeout, shutdown): the run machinery ends the task with the run's status, not as a failure.
      if (!ctx.signal.aborted) await exportTask.fail(error);
      throw error;
    }

    // The snapshot has given all it holds: its removal (or keeping, by the snapshot retention) runs while the backup is
    // committed and the remote's retention deletes older backups, instead of after them. A failed removal is a warning;
    // only recording that warning can reject, and it is awaited below whatever happens.
    cleaning = removeOrKeepRunSnapshot(ctx, snapshot.ref);
    cleaning.catch(() => undefined); // awaited below; not unhandled meanwhile
    const commitInput: CommitInput = {
      scheduleId: ctx.schedule.id ?? MANUAL_SCHEDULE_ID,
      vm: plainRecord(ctx.ops.findVm(ctx.vm.uuid)),
      vmSnapshot: plainRecord(snapshotRecord),
      cairn: {
        quiesced: snapshot.quiesced,
        compression: COMPRESSION_NAME[ctx.settings.compression],
        disks: Object.fromEntries(
          disks.map((d) => [d.vdiRef, { vdiUuid: d.vdiUuid, name: d.name, virtualSize: d.virtualSize, differencing: false }]),
        ),
      },
    };
    const restorePointIds: string[] = [];
    await targets.commit(commitInput, async (writer, metadataPath) => {
      restorePointIds.push(await recordRemoteBackup(ctx, writer.target, metadataPath));
      await applyRemoteRetention(ctx, writer.target);
    });
    if (restorePointIds.length === 0) throw targets.failure();
    return { restorePointIds, transferredBytes: exportedBytes };
  } finally {
    await targets.abortUncommitted();
    await (cleaning ?? removeOrKeepRunSnapshot(ctx, snapshot.ref));
  }
}
