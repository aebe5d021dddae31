/**
 * Picks the base of a delta backup: the newest snapshot of this job for this VM that was fully exported (other_config
 * `xo:backup:exported`), provided every target still holds the backup made from it (its metadata exists with the same
 * timestamp, and its VHD for each disk); and unless `fullInterval` asks for a full now. When there is no valid base, the
 * reason is returned so the fallback to a full is never silent.
 */
import { parseBackupTimestamp } from "../../repository/layout.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { VmDisk } from "../../xapi/vm-operations.js";
import type { VmBackupContext } from "./backup-context.js";

export interface DeltaBase {
  snapshot: XapiRecord;
  /** Base snapshot disk per source VDI uuid. */
  disks: Map<string, VmDisk>;
  /** Deltas since the last full, counting the base. */
  chainLength: number;
  timestamp: number;
}

export type BaseChoice = { base: DeltaBase } | { base: undefined; reason: string };

export async function chooseDeltaBase(
  ctx: VmBackupContext,
  sourceDisks: VmDisk[],
  holdsBackup: (targetName: string, timestamp: number, vdiUuids: string[]) => Promise<boolean>,
): Promise<BaseChoice> {
  const snapshots = ctx.ops
    .snapshotsOf(ctx.vm.uuid, { [OtherConfigKey.BackupJob]: ctx.jobId })
    .filter((s) => (s.other_config as Record<string, string>)[OtherConfigKey.BackupExported] === "true");
  const newest = snapshots.at(-1);
  if (!newest) return { base: undefined, reason: "first backup of this VM by this job" };
  const config = newest.other_config as Record<string, string>;
  const chainLength = Number(config[OtherConfigKey.DeltaChainLength] ?? "0") + 1;
  if (ctx.settings.fullInterval > 0 && chainLength >= ctx.settings.fullInterval) {
    return { base: undefined, reason: `fullInterval ${ctx.settings.fullInterval} reached` };
  }
  const timestamp = parseBackupTimestamp(config[OtherConfigKey.BackupDatetime] ?? "");
  if (timestamp === undefined) return { base: undefined, reason: `the previous snapshot has no valid ${OtherConfigKey.BackupDatetime}` };
  const baseDisks = new Map<string, VmDisk>();
  for (const disk of ctx.ops.disks(newest)) {
    const vdi = ctx.ops.getRecord(disk.vdiRef);
    const source = vdi?.snapshot_of ? ctx.ops.getRecord(vdi.snapshot_of as string) : undefined;
    if (source) baseDisks.set(source.uuid, disk);
  }
  const missing = sourceDisks.filter((d) => !baseDisks.has(d.vdiUuid));
  if (missing.length === sourceDisks.length) return { base: undefined, reason: "the previous snapshot shares no disk with the VM now" };
  for (const target of ctx.targets) {
    if (
      !(await holdsBackup(
        target.name,
        timestamp,
        sourceDisks.filter((d) => baseDisks.has(d.vdiUuid)).map((d) => d.vdiUuid),
      ))
    ) {
      return { base: undefined, reason: `${target.name} no longer holds the previous backup (${config[OtherConfigKey.BackupDatetime]})` };
    }
  }
  return { base: { snapshot: newest, disks: baseDisks, chainLength, timestamp } };
}

/** The source VM disk a snapshot disk was taken from (its uuid names the disk's folder on a remote). */
export function sourceOf(ctx: VmBackupContext, disk: VmDisk): string {
  const vdi = ctx.ops.getRecord(disk.vdiRef);
  const source = vdi?.snapshot_of ? ctx.ops.getRecord(vdi.snapshot_of as string) : undefined;
  return source?.uuid ?? disk.vdiUuid;
}

/** Snapshots of this job never marked exported were left by an interrupted or failed run: they can be no base. */
export async function removeUnexportedSnapshots(ctx: VmBackupContext): Promise<void> {
  const leftovers = ctx.ops
    .snapshotsOf(ctx.vm.uuid, { [OtherConfigKey.BackupJob]: ctx.jobId })
    .filter((s) => (s.other_config as Record<string, string>)[OtherConfigKey.BackupExported] !== "true");
  for (const snapshot of leftovers) {
    await ctx.task.run("clean", `remove snapshot ${String(snapshot.name_label)} left by an interrupted run`, async () => {
      await ctx.ops.destroySnapshot(snapshot.$ref);
      return { snapshotUuid: snapshot.uuid };
    });
  }
}
