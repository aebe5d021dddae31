/**
 * DELTA: snapshot tagged with the job; base = the newest exported snapshot whose backup every target holds; each disk
 * exported as a VHD (differencing against the base's disk when there is a base, full otherwise, and a full every
 * `fullInterval`), its identity rewritten so the chain on the remote links by id; streamed to every target at once; metadata
 * last; the snapshot marked exported (the next base); retention per schedule with merges; older job snapshots removed.
 */
import { chainStreams } from "../../streams/stream-chain.js";
import type { Readable } from "node:stream";

import { measureVhdStream, rewriteVhdIdentity } from "../../formats/vhd/index.js";
import { formatBackupTimestamp, metadataPath, resolveInVmDir, vhdRelativePath } from "../../repository/layout.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { VmDisk } from "../../xapi/vm-operations.js";
import { MANUAL_SCHEDULE_ID, type BackupTarget, type VmBackupContext, type VmBackupResult } from "./backup-context.js";
import { byteMeter } from "../../streams/byte-meter.js";
import { CbtFallback, CbtNbdRun } from "./cbt-nbd-delta.js";
import { chooseDeltaBase, removeUnexportedSnapshots, sourceOf, type DeltaBase } from "./delta-base.js";
import { applyRemoteRetention, recordRemoteBackup } from "./remote-backup-index.js";
import { destroyRunSnapshot, pruneSnapshotsKeepingDeltaBase } from "./snapshot-retention.js";
import { takeSnapshot } from "./take-snapshot.js";
import { BackupTargetWriter } from "../writers/backup-target-writer.js";
import { TargetSet } from "../writers/target-set.js";
import { xapiErrorCode } from "../../xapi/pool-connection.js";
import { settledWithin } from "../concurrency.js";
import { DeltaImpossibleError, deltaImpossibleReason } from "../../xapi/replica-operations.js";
import { plainRecord } from "../../xapi/xapi-records.js";

export async function deltaBackup(ctx: VmBackupContext): Promise<VmBackupResult> {
  try {
    return await deltaBackupWithCbt(ctx);
  } catch (error) {
    // A disk on an SR that stores no VHDs (a raw LV) or above 2040 GiB: XAPI refuses its delta after the 200, with an
    // empty body. The attempt left nothing (targets aborted, snapshot removed): a full says it all again.
    if (!(error instanceof DeltaImpossibleError) || ctx.signal.aborted) throw error;
    await ctx.task.warn(`${error.reason}: a full backup instead`);
    return deltaBackupOnce(ctx, undefined, { full: error.reason });
  }
}

async function deltaBackupWithCbt(ctx: VmBackupContext): Promise<VmBackupResult> {
  if (!ctx.settings.cbtNbd) return deltaBackupOnce(ctx, undefined);
  try {
    return await deltaBackupOnce(ctx, await CbtNbdRun.start(ctx, false));
  } catch (error) {
    if (!(error instanceof CbtFallback) || ctx.signal.aborted) throw error;
    await ctx.task.warn(`CBT + NBD could not make this delta (${error.message}): the export path makes a full instead`);
  }
  return deltaBackupOnce(ctx, await CbtNbdRun.start(ctx, true));
}

/**
 * One attempt; with `cbt`, disks are read through CBT + NBD where it can (cbt-nbd-delta.ts); with `full`, no base (the
 * reason a delta cannot be made).
 */
async function deltaBackupOnce(ctx: VmBackupContext, cbt: CbtNbdRun | undefined, options: { full?: string } = {}): Promise<VmBackupResult> {
  const vm = ctx.ops.findVm(ctx.vm.uuid);
  if (!vm) throw new Error(`VM ${ctx.vm.name} (${ctx.vm.uuid}) is no longer in its pool.`);
  const sourceDisks = ctx.ops.disks(vm);
  await removeUnexportedSnapshots(ctx);
  const holds = (name: string, timestamp: number, vdiUuids: string[]) =>
    targetHolds(ctx.targets.find((t) => t.name === name)!, ctx, timestamp, vdiUuids);
  const choice =
    options.full !== undefined
      ? { base: undefined, reason: options.full }
      : cbt
        ? await cbt.chooseBase(sourceDisks, holds)
        : await chooseDeltaBase(ctx, sourceDisks, holds);
  const base = choice.base;
  if (!base && options.full === undefined) {
    if (choice.reason !== "first backup of this VM by this job") await ctx.task.warn(`full backup instead of a delta: ${choice.reason}`);
  }

  const snapshot = await takeSnapshot(ctx);
  let keepSnapshot = false;
  const targets = new TargetSet(
    ctx.targets.map(
      (target) =>
        new BackupTargetWriter(target, {
          vmUuid: ctx.vm.uuid,
          timestamp: ctx.timestamp,
          mode: "delta",
          jobId: ctx.jobId,
          runId: ctx.runId,
        }),
    ),
    { task: ctx.task, signal: ctx.signal },
  );
  try {
    // Cancelled while the snapshot was being taken: stop here (the finally removes the snapshot).
    if (ctx.signal.aborted) throw new Error(`stopped before the export: ${String(ctx.signal.reason)}`);
    const snapshotRecord = ctx.ops.getRecord(snapshot.ref)!;
    const snapshotDisks = ctx.ops.disks(snapshotRecord);
    await targets.prepare();

    const vhds: Record<string, string> = {};
    const differencing: Record<string, boolean> = {};
    const diskInfo: Record<
      string,
      { vdiUuid: string; name: string; virtualSize: number; differencing: boolean; parentTimestamp?: number }
    > = {};
    let transferred = 0;
    for (const [index, disk] of snapshotDisks.entries()) {
      const source = sourceOf(ctx, disk);
      const baseDisk = base?.disks.get(source);
      // The VM's progress: whole disks done, plus the share of the disk under way.
      const diskProgress = (fraction: number) => ctx.reportProgress?.((index + fraction) / snapshotDisks.length);
      const parent = baseDisk && base ? { disk: baseDisk, base } : undefined;
      const result =
        (await cbt?.exportDisk(disk, source, parent, targets, diskProgress)) ??
        (await exportDisk(ctx, disk, source, parent, targets, diskProgress));
      transferred += result.bytes;
      vhds[disk.vdiRef] = vhdRelativePath(ctx.jobId, source, ctx.timestamp);
      differencing[disk.vdiRef] = result.differencing;
      diskInfo[disk.vdiRef] = {
        vdiUuid: source,
        name: disk.name,
        virtualSize: disk.virtualSize,
        differencing: result.differencing,
        ...(result.differencing && base ? { parentTimestamp: base.timestamp } : {}),
      };
      targets.assertLive();
    }
    const anyDelta = Object.values(differencing).some(Boolean);
    const chainLength = anyDelta && base ? base.chainLength : 0;

    const restorePointIds: string[] = [];
    const committed = await targets.commit(
      {
        scheduleId: ctx.schedule.id ?? MANUAL_SCHEDULE_ID,
        vm: plainRecord(vm),
        vmSnapshot: plainRecord(snapshotRecord),
        vbds: Object.fromEntries(snapshotDisks.map((d) => [d.vbdRef, plainRecord(ctx.ops.getRecord(d.vbdRef))])),
        vdis: Object.fromEntries(snapshotDisks.map((d) => [d.vdiRef, plainRecord(ctx.ops.getRecord(d.vdiRef))])),
        vifs: Object.fromEntries(((snapshotRecord.VIFs as string[]) ?? []).map((ref) => [ref, plainRecord(ctx.ops.getRecord(ref))])),
        vhds,
        isVhdDifferencing: differencing,
        cairn: { quiesced: snapshot.quiesced, compression: "none", disks: diskInfo },
      },
      async (writer, metadataPath) => {
        restorePointIds.push(await recordRemoteBackup(ctx, writer.target, metadataPath));
      },
    );
    if (restorePointIds.length === 0) throw targets.failure();
    // Only now may this snapshot be the base of the next delta.
    await ctx.ops.setOtherConfig(snapshot.ref, {
      [OtherConfigKey.BackupExported]: "true",
      [OtherConfigKey.DeltaChainLength]: String(chainLength),
    });
    keepSnapshot = true;
    await cbt?.afterCommit(snapshot.ref, snapshotDisks);
    // The pool's older snapshots are pruned while the remotes' retention runs: neither needs the other. A failed prune is a
    // warning; only recording that warning can reject.
    const pruning = pruneSnapshotsKeepingDeltaBase(ctx, snapshot.ref);
    pruning.catch(() => undefined); // awaited below; not unhandled meanwhile
    try {
      for (const writer of committed) await applyRemoteRetention(ctx, writer.target);
    } finally {
      await pruning;
    }
    return { restorePointIds, transferredBytes: transferred };
  } finally {
    await targets.abortUncommitted();
    if (!keepSnapshot) {
      await destroyRunSnapshot(ctx, snapshot.ref);
    }
  }
}

/** How long a broken-off export waits for XAPI's verdict on its task. */
const VERDICT_WAIT_MS = 5_000;

interface DiskExport {
  bytes: number;
  differencing: boolean;
}

async function exportDisk(
  ctx: VmBackupContext,
  disk: VmDisk,
  sourceVdiUuid: string,
  parent: { disk: VmDisk; base: DeltaBase } | undefined,
  targets: TargetSet<BackupTargetWriter>,
  reportProgress: (fraction: number) => void,
): Promise<DiskExport> {
  const task = await ctx.task.child("export", `export disk ${disk.name || disk.userdevice} (${parent ? "delta" : "full"})`);
  try {
    let exported = await openExport(ctx, disk, parent);
    if (!exported && parent) {
      await ctx.task.warn(`disk ${disk.name}: the delta could not be computed by the host: full export instead`);
      parent = undefined;
      exported = await openExport(ctx, disk, undefined);
    }
    const { body, done } = exported!;
    const onAbort = () => body.destroy(new Error(`export stopped: ${String(ctx.signal.reason ?? "cancelled")}`));
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (ctx.signal.aborted) onAbort(); // cancelled while the export was being opened: no abort event will come
    const identity = rewriteVhdIdentity(
      {
        uuid: disk.vdiUuid,
        ...(parent ? { parent: { uuid: parent.disk.vdiUuid, name: `${formatBackupTimestamp(parent.base.timestamp)}.vhd` } } : {}),
      },
      `export of disk ${disk.name}`,
    );
    // Progress is measured against the export's own size once its BAT has gone by (a delta carries its changed blocks,
    // not the disk's virtual size); the virtual size until then.
    let expectedBytes = disk.virtualSize;
    const measure = measureVhdStream((size) => {
      expectedBytes = size.streamBytes;
    });
    const meter = byteMeter((bytes, delta) => {
      const fraction = Math.min(0.99, bytes / Math.max(1, expectedBytes));
      task.progress(fraction, bytes);
      reportProgress(fraction);
      ctx.addTransferred(delta);
    }, 0);
    const stream: Readable = chainStreams(body, measure, identity, meter);
    // An error of the export itself (a cut connection, a VHD that does not parse) reaches every fork and fails every
    // target: remember it, to blame the export and not the remotes. An error arriving after a target failed is only the
    // echo of that failure (the source is destroyed once no fork is left).
    const liveAtStart = targets.live.length;
    let sourceError: Error | undefined;
    const onSourceError = (error: Error) => {
      if (targets.live.length === liveAtStart) sourceError ??= error;
    };
    body.once("error", onSourceError);
    identity.once("error", onSourceError);
    try {
      await targets.transfer(
        stream,
        { kind: "disk", vdiUuid: sourceVdiUuid, sizeHint: disk.virtualSize },
        { what: `disk ${disk.name}`, expectedBytes: () => expectedBytes },
      );
      if (targets.live.length === 0) {
        // No one reads the export any more: end its connection (XAPI's task then fails, as it should) and say why.
        body.destroy();
        if (sourceError) {
          // XAPI fails its task before it closes the body: its verdict, when it gives one within a few seconds.
          const verdict = await settledWithin(
            done.then(
              () => undefined,
              (error: unknown) => error,
            ),
            VERDICT_WAIT_MS,
          );
          const impossible = parent ? deltaImpossibleReason(verdict, disk.name || disk.userdevice) : undefined;
          if (impossible !== undefined) throw new DeltaImpossibleError(impossible);
          throw exportBrokeOff(disk, sourceError, verdict);
        }
        throw targets.failure();
      }
      await done.catch((error) => {
        throw new Error(`XAPI's export task failed: ${xapiErrorCode(error)}`, { cause: error });
      });
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
    await task.succeed({ bytes: meter.bytes, differencing: Boolean(parent) }, meter.bytes);
    return { bytes: meter.bytes, differencing: Boolean(parent) };
  } catch (error) {
    // Stopped (cancel, timeout, shutdown): the run machinery ends the task with the run's status, not as a failure.
    if (!ctx.signal.aborted) await task.fail(error);
    throw error;
  }
}

/** The error of an export that broke off, with XAPI's verdict on its task when there was one. */
function exportBrokeOff(disk: VmDisk, sourceError: Error, verdict: unknown): Error {
  const xapi = verdict !== undefined ? ` (XAPI's export task failed: ${xapiErrorCode(verdict)})` : "";
  return new Error(`the export of disk ${disk.name} broke off${xapi}: ${sourceError.message}; nothing of it was kept`, {
    cause: sourceError,
  });
}

async function openExport(ctx: VmBackupContext, disk: VmDisk, parent: { disk: VmDisk } | undefined) {
  try {
    return await ctx.ops.exportVhd(disk.vdiRef, parent?.disk.vdiRef);
  } catch (error) {
    if (!parent) throw error;
    return undefined;
  }
}

async function targetHolds(target: BackupTarget, ctx: VmBackupContext, timestamp: number, vdiUuids: string[]): Promise<boolean> {
  const paths = [
    metadataPath(ctx.vm.uuid, timestamp),
    ...vdiUuids.map((uuid) => resolveInVmDir(ctx.vm.uuid, vhdRelativePath(ctx.jobId, uuid, timestamp))),
  ];
  for (const path of paths) {
    try {
      await target.remote.stat(path);
    } catch {
      return false;
    }
  }
  return true;
}
