/**
 * CONTINUOUS_REPLICATION: one live replica per VM, job and target SR, kept up to date by deltas, with a snapshot of the
 * replica after each update (the restore points, kind REPLICA).
 *
 * Per run: snapshot the VM (tagged with the job); the base is the newest snapshot of this job marked exported (delta-base.ts
 * rules, fullInterval included). Per target SR, the replica gets:
 * - a full copy (replica-full-copy.ts) the first time, or when the replica cannot take a delta: no base; the replica was
 *   last updated from another snapshot; its disks no longer match the VM's; or it diverged from its base: it is not Halted,
 *   or a disk was written since its last replica snapshot (replica-divergence.ts). A full other than the first comes with a
 *   warning. The replaced replica is destroyed with its disks when it merely lagged, and set aside (marked
 *   `cairn:replica:superseded`, never touched again) when it diverged: someone may be using it.
 * - otherwise a delta: each disk exported as a differencing VHD against the base's disk (`/export_raw_vdi?base=`), forked to
 *   every such target and written onto the replica's disk (`PUT /import_raw_vdi?vdi=&format=vhd`).
 * Then the replica is marked (base = this snapshot, time, schedule), snapshotted (named with the time), a REPLICA point
 * recorded for that snapshot, and the newest `copyRetention` replica snapshots of this schedule are kept on that SR. Once a
 * target is updated, the VM's snapshot is marked exported (the next base) and older job snapshots are removed.
 */
import { chainStreams } from "../../streams/stream-chain.js";

import { formatBackupTimestamp } from "../../repository/layout.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { XapiRecord } from "../../xapi/pool-connection.js";
import { deltaImpossibleReason, MAX_VHD_EXPORT_BYTES, marksToOtherConfig } from "../../xapi/replica-operations.js";
import type { VmDisk } from "../../xapi/vm-operations.js";
import type { VmBackupContext, VmBackupResult } from "../backup/backup-context.js";
import { byteMeter } from "../../streams/byte-meter.js";
import { chooseDeltaBase, removeUnexportedSnapshots, sourceOf, type BaseChoice } from "../backup/delta-base.js";
import { settledWithin } from "../concurrency.js";
import { DeltaImpossibleError, EXPORT_VERDICT_WAIT_MS, writtenReplicaDisk } from "./replica-divergence.js";
import { copyFullReplica } from "./replica-full-copy.js";
import { forgetReplicaPoints, recordReplicaPoint } from "./replica-restore-points.js";
import { replicaTimeLabel, resolveReplicaTargets, type ReplicaTarget } from "./replica-targets.js";
import { destroyRunSnapshot, pruneSnapshotsKeepingDeltaBase } from "../backup/snapshot-retention.js";
import { takeSnapshot } from "../backup/take-snapshot.js";
import { TargetSet } from "../writers/target-set.js";
import { ReplicaDeltaWriter, type DeltaPlan } from "./replica-delta-writer.js";
import { messageOf } from "../../errors.js";
import { xapiErrorCode } from "../../xapi/pool-connection.js";

const MODE = "CONTINUOUS_REPLICATION";

type ReplicaPlan = DeltaPlan | { kind: "full"; reason?: string; previous?: XapiRecord; diverged?: boolean };

export async function continuousReplication(ctx: VmBackupContext): Promise<VmBackupResult> {
  const vm = ctx.ops.findVm(ctx.vm.uuid);
  if (!vm) throw new Error(`VM ${ctx.vm.name} (${ctx.vm.uuid}) is no longer in its pool.`);
  const targets = await resolveReplicaTargets(ctx);
  await removeUnexportedSnapshots(ctx);
  // No remote targets: only the snapshot rules (exported, fullInterval) apply; each replica is checked against the base below.
  const choice = await chooseDeltaBase(ctx, ctx.ops.disks(vm), async () => true);
  const snapshot = await takeSnapshot(ctx);
  let keepSnapshot = false;
  try {
    if (ctx.signal.aborted) throw new Error(`stopped before the export: ${String(ctx.signal.reason)}`);
    const stamp = formatBackupTimestamp(ctx.timestamp);
    const snapshotDisks = ctx.ops.disks(ctx.ops.getRecord(snapshot.ref)!);
    const plans = new Map<ReplicaTarget, ReplicaPlan>();
    for (const target of targets) {
      const plan = await planReplica(ctx, target, choice, snapshotDisks);
      plans.set(target, plan);
      if (plan.kind === "full" && plan.reason) await ctx.task.warn(`${target.name}: full replica instead of a delta: ${plan.reason}`);
    }

    const updated = new Map<ReplicaTarget, { replica: XapiRecord; plan: ReplicaPlan }>();
    let bytes = 0;
    const copyFull = async (fullTargets: ReplicaTarget[]) => {
      try {
        const copy = await copyFullReplica(ctx, snapshot.ref, fullTargets, (target) => ({
          name: `${ctx.vm.name} - ${ctx.jobName} - ${replicaTimeLabel(ctx.timestamp)}`,
          description: `Continuous replication replica of ${ctx.vm.name} (${ctx.vm.uuid}) kept up to date by Cairn job ${ctx.jobName}; its snapshots are the restore points. Its start is blocked: copy it, or remove the block for a failover.`,
          marks: {
            of: ctx.vm.uuid,
            job: ctx.jobId,
            schedule: ctx.schedule.id ?? "",
            sr: target.srUuid,
            datetime: stamp,
            mode: MODE,
            base: snapshot.uuid,
          },
        }));
        bytes += copy.bytes;
        for (const [target, replica] of copy.replicas) updated.set(target, { replica, plan: plans.get(target)! });
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        await ctx.task.warn(`full replica failed on ${fullTargets.map((t) => t.name).join(", ")}: ${messageOf(error)}`);
      }
    };
    const fullTargets = targets.filter((t) => plans.get(t)!.kind === "full");
    if (fullTargets.length > 0) await copyFull(fullTargets);
    const deltaTargets = targets.filter((t) => plans.get(t)!.kind === "delta");
    if (deltaTargets.length > 0) {
      const result = await applyDeltas(ctx, snapshotDisks, deltaTargets, plans);
      bytes += result.bytes;
      for (const target of result.updated) {
        const plan = plans.get(target) as Extract<ReplicaPlan, { kind: "delta" }>;
        updated.set(target, { replica: plan.replica, plan });
      }
      if (result.impossible !== undefined) {
        // XAPI cannot export this VM's disks as deltas at all: the replicas are refreshed by a full copy (which XAPI can do)
        // and the lagging replica they replace is removed, as after any full.
        const fallback = deltaTargets.filter((t) => !result.updated.includes(t));
        for (const target of fallback) {
          const previous = (plans.get(target) as DeltaPlan).replica;
          plans.set(target, { kind: "full", previous, reason: result.impossible });
          await ctx.task.warn(`${target.name}: full replica instead of a delta: ${result.impossible}`);
        }
        if (fallback.length > 0) await copyFull(fallback);
      }
    }

    const restorePointIds: string[] = [];
    let anyDelta = false;
    for (const [target, { replica, plan }] of updated) {
      try {
        restorePointIds.push(
          await finishUpdate(ctx, target, replica, { stamp, sourceSnapshotUuid: snapshot.uuid, quiesced: snapshot.quiesced }),
        );
        anyDelta ||= plan.kind === "delta";
        if (plan.kind === "full" && plan.previous) await retireReplica(ctx, target, plan.previous, plan.diverged === true, stamp);
        await applySnapshotRetention(ctx, target);
      } catch (error) {
        await ctx.task.warn(`${target.name}: ${messageOf(error)}`);
      }
    }
    if (restorePointIds.length === 0) throw new Error("no target SR holds an up-to-date replica after this run");
    // Only now may this snapshot be the base of the next delta.
    const chainLength = anyDelta && choice.base ? choice.base.chainLength : 0;
    await ctx.ops.setOtherConfig(snapshot.ref, {
      [OtherConfigKey.BackupExported]: "true",
      [OtherConfigKey.DeltaChainLength]: String(chainLength),
    });
    keepSnapshot = true;
    await pruneSnapshotsKeepingDeltaBase(ctx, snapshot.ref);
    return { restorePointIds, transferredBytes: bytes };
  } finally {
    if (!keepSnapshot) {
      await destroyRunSnapshot(ctx, snapshot.ref);
    }
  }
}

/** Whether the target's replica can take a delta from `choice`'s base, and if not, why (undefined: the first replica). */
async function planReplica(ctx: VmBackupContext, target: ReplicaTarget, choice: BaseChoice, snapshotDisks: VmDisk[]): Promise<ReplicaPlan> {
  const { replicas } = target;
  await replicas.ops.sync();
  const replica = replicas.replicas({ of: ctx.vm.uuid, job: ctx.jobId, sr: target.srUuid, mode: MODE }).at(-1);
  if (!replica) return { kind: "full" };
  const label = `the replica ${String(replica.name_label)}`;
  if (replica.power_state !== "Halted") {
    return {
      kind: "full",
      previous: replica,
      diverged: true,
      reason: `${label} is ${String(replica.power_state)}: it was started, so its disks no longer match its base`,
    };
  }
  const base = choice.base;
  if (!base) return { kind: "full", previous: replica, reason: choice.reason };
  if ((replica.other_config as Record<string, string>)[OtherConfigKey.ReplicaBase] !== base.snapshot.uuid) {
    return {
      kind: "full",
      previous: replica,
      reason: `${label} was last updated from another snapshot than the base (an earlier run failed on this SR)`,
    };
  }
  const replicaDisks = replicas.ops.disks(replica);
  const disks: Extract<ReplicaPlan, { kind: "delta" }>["disks"] = [];
  for (const disk of snapshotDisks) {
    const baseDisk = base.disks.get(sourceOf(ctx, disk));
    const replicaDisk = replicaDisks.find((d) => d.userdevice === disk.userdevice);
    if (!baseDisk || !replicaDisk || replicaDisk.virtualSize !== disk.virtualSize) {
      return {
        kind: "full",
        previous: replica,
        reason: `the VM's disks changed since ${label} was made (disk ${disk.name || disk.userdevice})`,
      };
    }
    if (disk.virtualSize > MAX_VHD_EXPORT_BYTES) {
      return {
        kind: "full",
        previous: replica,
        reason: `disk ${disk.name || disk.userdevice} is larger than 2040 GiB, the most a VHD can describe: XAPI exports no delta of it`,
      };
    }
    disks.push({ source: disk, base: baseDisk, replicaVdiRef: replicaDisk.vdiRef });
  }
  const last = replicas
    .replicaSnapshots({ of: ctx.vm.uuid, job: ctx.jobId, sr: target.srUuid })
    .filter((s) => s.snapshot_of === replica.$ref)
    .at(-1);
  if (!last || (last.other_config as Record<string, string>)[OtherConfigKey.ReplicaBase] !== base.snapshot.uuid) {
    return { kind: "full", previous: replica, reason: `${label} has no snapshot of its last update to compare its disks with` };
  }
  const lastDisks = replicas.ops.disks(last);
  const pairs = replicaDisks
    .map((d) => ({ replica: d, snapshot: lastDisks.find((s) => s.userdevice === d.userdevice)! }))
    .filter((p) => p.snapshot);
  let written: { written: string | null };
  try {
    written = await ctx.task.run("check", `check that ${label} is unchanged since its last update`, async () => ({
      written: (await writtenReplicaDisk(replicas, pairs, ctx.signal)) ?? null,
    }));
  } catch (error) {
    // XAPI exports no difference of these disks: no delta can be taken either. The Halted replica is replaced as a lagging one.
    if (error instanceof DeltaImpossibleError) return { kind: "full", previous: replica, reason: error.reason };
    throw error;
  }
  if (written.written) {
    return {
      kind: "full",
      previous: replica,
      diverged: true,
      reason: `${label}'s disk ${written.written} was written since its last update (it was booted, or its disk used elsewhere): its disks no longer match its base`,
    };
  }
  return { kind: "delta", replica, disks };
}

/** Streams each disk's difference against the base to every delta target; @returns the targets that took every disk. */
async function applyDeltas(
  ctx: VmBackupContext,
  snapshotDisks: VmDisk[],
  targets: ReplicaTarget[],
  plans: Map<ReplicaTarget, ReplicaPlan>,
): Promise<{ updated: ReplicaTarget[]; bytes: number; impossible?: string }> {
  const set = new TargetSet(
    targets.map((target) => new ReplicaDeltaWriter(ctx, target, plans.get(target) as DeltaPlan)),
    { task: ctx.task, signal: ctx.signal },
  );
  try {
    // Before any write: a replica a killed process was writing onto is found (and checked) by the interrupted-run cleanup.
    await set.prepare().catch((error: unknown) => {
      if (ctx.signal.aborted) throw error;
      // Every delta target was dropped, each with its warning: the full targets may still make it, so the VM goes on.
    });
    let bytes = 0;
    let impossible: string | undefined;
    for (const [index, disk] of snapshotDisks.entries()) {
      const live = set.live;
      if (live.length === 0 || impossible !== undefined) break;
      const baseRef = live[0].plan.disks[index].base.vdiRef;
      const task = await ctx.task.child("export", `export disk ${disk.name || disk.userdevice} (delta)`);
      try {
        const { body, done } = await ctx.ops.exportVhd(disk.vdiRef, baseRef);
        // XAPI refuses some deltas only after its 200 (an empty body, then its task fails): its task's verdict says why.
        const verdict = done.then(
          () => undefined,
          (error: unknown) => error,
        );
        const onAbort = () => body.destroy(new Error(`export stopped: ${String(ctx.signal.reason ?? "cancelled")}`));
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        if (ctx.signal.aborted) onAbort();
        const meter = byteMeter((sent, delta) => {
          task.progress(Math.min(0.99, sent / Math.max(1, disk.virtualSize)), sent);
          ctx.reportProgress?.((index + Math.min(0.99, sent / Math.max(1, disk.virtualSize))) / snapshotDisks.length);
          ctx.addTransferred(delta);
        }, 0);
        try {
          await set.transfer(chainStreams(body, meter), index, { what: `disk ${disk.name} delta`, expectedBytes: disk.virtualSize });
          if (set.live.length === 0) body.destroy();
          else {
            await done.catch((error) => {
              throw new Error(`XAPI's export task failed: ${xapiErrorCode(error)}`, { cause: error });
            });
          }
        } finally {
          ctx.signal.removeEventListener("abort", onAbort);
        }
        if (set.live.length === 0) {
          impossible = deltaImpossibleReason(await settledWithin(verdict, EXPORT_VERDICT_WAIT_MS), disk.name || disk.userdevice);
          if (impossible !== undefined) await task.fail(new Error(impossible));
          else await task.succeed({ bytes: meter.bytes, differencing: true }, meter.bytes);
          continue;
        }
        bytes += meter.bytes;
        await task.succeed({ bytes: meter.bytes, differencing: true }, meter.bytes);
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        await task.fail(error);
        await set.dropAll(error);
      }
    }
    const updated = await set.commit(undefined);
    return { updated: updated.map((writer) => writer.target), bytes, impossible };
  } finally {
    // Dropped, or stopped: see ReplicaDeltaWriter.abort.
    await set.abortUncommitted();
  }
}

/** Marks the replica (base, time, schedule), snapshots it (named with the time) and records that snapshot as a REPLICA point. */
async function finishUpdate(
  ctx: VmBackupContext,
  target: ReplicaTarget,
  replica: XapiRecord,
  update: { stamp: string; sourceSnapshotUuid: string; quiesced: boolean },
): Promise<string> {
  const marks = marksToOtherConfig({ schedule: ctx.schedule.id ?? "", datetime: update.stamp, base: update.sourceSnapshotUuid });
  // Complete: neither half-imported (a full) nor being written (a delta) for the interrupted-run cleanup; and the replica's
  // snapshot must not carry these marks.
  await target.replicas.ops.removeOtherConfig(replica.$ref, [OtherConfigKey.ImportRun, OtherConfigKey.ReplicaUpdating]);
  await target.replicas.ops.setOtherConfig(replica.$ref, marks);
  const name = `${ctx.vm.name} - ${ctx.jobName} - ${replicaTimeLabel(ctx.timestamp)}`;
  const made = await ctx.task.run("snapshot", `snapshot of the replica on ${target.name}`, async () =>
    target.replicas.ops.snapshot(replica.$ref, name, { quiesce: false, otherConfig: marks }),
  );
  const record = target.replicas.ops.getRecord(made.ref)!;
  return recordReplicaPoint(ctx, target, record, update.quiesced);
}

/** A replica replaced by a full: destroyed with its disks when it merely lagged, set aside (never touched again) when it diverged. */
async function retireReplica(
  ctx: VmBackupContext,
  target: ReplicaTarget,
  previous: XapiRecord,
  diverged: boolean,
  stamp: string,
): Promise<void> {
  if (diverged) {
    await target.replicas.ops.setOtherConfig(previous.$ref, { [OtherConfigKey.ReplicaSuperseded]: stamp });
    await ctx.task.warn(
      `${target.name}: the previous replica ${String(previous.name_label)} was set aside as it is (someone may be using it): remove it when it is no longer needed`,
    );
    return;
  }
  await ctx.task.run("clean", `remove the previous replica ${String(previous.name_label)}`, async () => {
    await target.replicas.destroyVm(previous.$ref);
    return { replicaUuid: previous.uuid };
  });
}

/** Keeps the newest `copyRetention` replica snapshots of this VM, job and schedule on the SR; destroys the others. */
async function applySnapshotRetention(ctx: VmBackupContext, target: ReplicaTarget): Promise<void> {
  const keep = Math.max(1, ctx.schedule.copyRetention);
  await target.replicas.ops.sync();
  const snapshots = target.replicas.replicaSnapshots({
    of: ctx.vm.uuid,
    job: ctx.jobId,
    schedule: ctx.schedule.id ?? "",
    sr: target.srUuid,
    mode: MODE,
  });
  const doomed = snapshots.slice(0, Math.max(0, snapshots.length - keep));
  if (doomed.length === 0) return;
  await ctx.task.run("retention", `retention on ${target.name}: keep ${keep} replica snapshots`, async () => {
    for (const snapshot of doomed) await target.replicas.ops.destroySnapshot(snapshot.$ref);
    await forgetReplicaPoints(
      ctx,
      doomed.map((s) => s.uuid),
    );
    return { removed: doomed.length };
  });
}
