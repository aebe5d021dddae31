/**
 * DELTA with the job setting `cbtNbd`: the backup path of current Xen Orchestra and Storware on real pools. After the
 * first full (the export path), each run snapshots the VM, asks XAPI which 64 KiB blocks changed since the previous
 * snapshot (`VDI.list_changed_blocks`), reads only those, rounded to 2 MiB VHD blocks, from the host's NBD server through
 * `nbdConnections` connections, and writes the same differencing VHD the export path writes. Once the restore point is
 * committed, the snapshot's data is destroyed (`VDI.data_destroy`: its CBT metadata stays, type `cbt_metadata`), so the
 * SR keeps no snapshot data between runs; the VM snapshot record stays as the next run's base, its disks found by the
 * `cairn:cbt:vdis` entry of its other_config (their VBDs are destroyed first: XAPI refuses data_destroy while a VDI has one).
 *
 * When CBT cannot say what changed (reset: the disk migrated, CBT was turned off), NBD is not offered, or an NBD
 * connection fails, the delta goes the export path: against the previous snapshot when it still has its data, otherwise
 * ({@link CbtFallback}) the whole VM backup is made again by the export path, a full, with a warning on the run.
 */
import type { Readable } from "node:stream";
import { messageOf } from "../../errors.js";
import { createVhdStream, rewriteVhdIdentity, VHD_BLOCK_SIZE, vhdStreamSize } from "../../formats/vhd/index.js";
import { formatBackupTimestamp, parseBackupTimestamp } from "../../repository/layout.js";
import { byteMeter } from "../../streams/byte-meter.js";
import { chainStreams } from "../../streams/stream-chain.js";
import { CbtOperations, changedVhdBlocks } from "../../xapi/nbd/cbt-operations.js";
import { NbdError } from "../../xapi/nbd/nbd-error.js";
import { NbdExport } from "../../xapi/nbd/nbd-export.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import { xapiErrorCode, type XapiRecord } from "../../xapi/pool-connection.js";
import type { VmDisk } from "../../xapi/vm-operations.js";
import type { BackupTargetWriter } from "../writers/backup-target-writer.js";
import type { TargetSet } from "../writers/target-set.js";
import type { VmBackupContext } from "./backup-context.js";
import { chooseDeltaBase, sourceOf, type BaseChoice, type DeltaBase } from "./delta-base.js";

/** other_config of a job's VM snapshot: JSON `{ source VDI uuid: snapshot VDI uuid }`, the disks once their VBDs are gone. */
export const CBT_VDIS_KEY = "cairn:cbt:vdis";

/** NBD reads in flight per disk, across its connections: enough to hide the round trips. */
const READ_WINDOW = 8;

/** The CBT + NBD path cannot make this delta and the previous snapshot has no data left: the export path makes a full. */
export class CbtFallback extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CbtFallback";
  }
}

export interface CbtDiskExport {
  bytes: number;
  differencing: boolean;
}

type HoldsBackup = (targetName: string, timestamp: number, vdiUuids: string[]) => Promise<boolean>;

export class CbtNbdRun {
  private constructor(
    private readonly ctx: VmBackupContext,
    private readonly cbt: CbtOperations,
    /** The fallback run: the export path for every disk, but the snapshot's data is still destroyed afterwards. */
    readonly exportOnly: boolean,
  ) {}

  /** Turns CBT on for the VM's disks (the first run, or after a reset); a disk that refuses it goes the export path. */
  static async start(ctx: VmBackupContext, exportOnly: boolean): Promise<CbtNbdRun> {
    const cbt = new CbtOperations(ctx.connection);
    const vm = ctx.ops.findVm(ctx.vm.uuid);
    for (const disk of vm ? ctx.ops.disks(vm) : []) {
      if (ctx.ops.getRecord(disk.vdiRef)?.cbt_enabled === true) continue;
      try {
        await cbt.enable(disk.vdiRef);
      } catch (error) {
        await ctx.task.warn(
          `changed block tracking could not be turned on for disk ${disk.name} (${xapiErrorCode(error)}): it goes the export path`,
        );
      }
    }
    await ctx.ops.sync();
    return new CbtNbdRun(ctx, cbt, exportOnly);
  }

  /** As {@link chooseDeltaBase}, but finding the disks of a snapshot whose data was destroyed through its `cairn:cbt:vdis`. */
  async chooseBase(sourceDisks: VmDisk[], holdsBackup: HoldsBackup): Promise<BaseChoice> {
    const ctx = this.ctx;
    const newest = this.exportedSnapshots().at(-1);
    const map = newest ? cbtVdis(newest) : undefined;
    if (this.exportOnly && map !== undefined) {
      return { base: undefined, reason: "the previous snapshot keeps only its CBT metadata (its data was destroyed after its backup)" };
    }
    if (this.exportOnly || !newest || map === undefined) return chooseDeltaBase(ctx, sourceDisks, holdsBackup);
    const config = newest.other_config as Record<string, string>;
    const chainLength = Number(config[OtherConfigKey.DeltaChainLength] ?? "0") + 1;
    if (ctx.settings.fullInterval > 0 && chainLength >= ctx.settings.fullInterval) {
      return { base: undefined, reason: `fullInterval ${ctx.settings.fullInterval} reached` };
    }
    const timestamp = parseBackupTimestamp(config[OtherConfigKey.BackupDatetime] ?? "");
    if (timestamp === undefined) return { base: undefined, reason: `the previous snapshot has no valid ${OtherConfigKey.BackupDatetime}` };
    const disks = new Map<string, VmDisk>();
    for (const source of sourceDisks) {
      const vdi = map[source.vdiUuid] === undefined ? undefined : this.cbt.vdiByUuid(map[source.vdiUuid]);
      if (vdi === undefined) continue;
      disks.set(source.vdiUuid, {
        vbdRef: "",
        vdiRef: vdi.$ref,
        vdiUuid: vdi.uuid,
        name: String(vdi.name_label ?? source.name),
        virtualSize: Number(vdi.virtual_size),
        userdevice: source.userdevice,
        srRef: String(vdi.SR),
      });
    }
    if (disks.size === 0) return { base: undefined, reason: "the previous snapshot shares no disk with the VM now" };
    for (const target of ctx.targets) {
      if (!(await holdsBackup(target.name, timestamp, [...disks.keys()]))) {
        return { base: undefined, reason: `${target.name} no longer holds the previous backup (${config[OtherConfigKey.BackupDatetime]})` };
      }
    }
    const base: DeltaBase = { snapshot: newest, disks, chainLength, timestamp };
    return { base };
  }

  /**
   * The delta of one disk read through CBT + NBD and streamed to every target; undefined when the export path is to do
   * it (a full, or a delta against a base that still has its data). @throws {@link CbtFallback}
   */
  async exportDisk(
    disk: VmDisk,
    sourceVdiUuid: string,
    parent: { disk: VmDisk; base: DeltaBase } | undefined,
    targets: TargetSet<BackupTargetWriter>,
    reportProgress: (fraction: number) => void,
  ): Promise<CbtDiskExport | undefined> {
    if (this.exportOnly || parent === undefined) return undefined;
    const ctx = this.ctx;
    const baseRecord = ctx.ops.getRecord(parent.disk.vdiRef);
    const baseHasData = baseRecord !== undefined && baseRecord.type !== "cbt_metadata";
    const cannot = async (why: string, cause?: unknown): Promise<undefined> => {
      if (!baseHasData) throw new CbtFallback(`disk ${disk.name}: ${why}`, { cause });
      await ctx.task.warn(`disk ${disk.name}: ${why}; its delta goes the export path`);
      return undefined;
    };
    let bitmap: Buffer;
    try {
      bitmap = await this.cbt.changedBlocks(parent.disk.vdiRef, disk.vdiRef);
    } catch (error) {
      return cannot(
        `changed block tracking cannot tell what changed since the previous backup (${xapiErrorCode(error)}): it was reset (the disk migrated, or CBT was turned off)`,
        error,
      );
    }
    const where = await this.cbt.nbdTargets(disk.vdiRef).catch(() => []);
    if (where.length === 0) return cannot("the pool offers no NBD for it (give a network the purpose nbd, or insecure_nbd)");
    let source: NbdExport | undefined;
    let openError: unknown;
    for (const target of where) {
      try {
        source = await NbdExport.open(target, { connections: ctx.settings.nbdConnections, signal: ctx.signal });
        break;
      } catch (error) {
        openError = error;
      }
    }
    if (source === undefined) return cannot(`NBD failed (${messageOf(openError)})`, openError);
    try {
      return await this.transfer(disk, sourceVdiUuid, parent, source, bitmap, targets, reportProgress);
    } finally {
      await source.close();
    }
  }

  private async transfer(
    disk: VmDisk,
    sourceVdiUuid: string,
    parent: { disk: VmDisk; base: DeltaBase },
    source: NbdExport,
    bitmap: Buffer,
    targets: TargetSet<BackupTargetWriter>,
    reportProgress: (fraction: number) => void,
  ): Promise<CbtDiskExport> {
    const ctx = this.ctx;
    const { indexes, changed64k } = changedVhdBlocks(bitmap, disk.virtualSize, VHD_BLOCK_SIZE);
    const task = await ctx.task.child(
      "export",
      `read disk ${disk.name || disk.userdevice} through NBD (delta: ${indexes.length} changed 2 MiB blocks, ${source.connectionCount} connections)`,
    );
    try {
      const parentIdentity = { uuid: parent.disk.vdiUuid, name: `${formatBackupTimestamp(parent.base.timestamp)}.vhd` };
      const vhd = createVhdStream({
        virtualSize: disk.virtualSize,
        uuid: disk.vdiUuid,
        parent: parentIdentity,
        blockIndexes: indexes,
        blocks: source.blocks(indexes, VHD_BLOCK_SIZE, READ_WINDOW),
      });
      // The same identity pass as the export path: the VHD on the remote is byte-for-byte what an export would have given.
      const identity = rewriteVhdIdentity({ uuid: disk.vdiUuid, parent: parentIdentity }, `NBD read of disk ${disk.name}`);
      const expectedBytes = vhdStreamSize({ virtualSize: disk.virtualSize, blockCount: indexes.length });
      const meter = byteMeter((bytes, delta) => {
        const fraction = Math.min(0.99, bytes / Math.max(1, expectedBytes));
        task.progress(fraction, bytes);
        reportProgress(fraction);
        ctx.addTransferred(delta);
      }, 0);
      let nbdFailure: NbdError | undefined;
      vhd.once("error", (error) => {
        if (error instanceof NbdError) nbdFailure ??= error;
      });
      const onAbort = () => vhd.destroy(new Error(`NBD read stopped: ${String(ctx.signal.reason ?? "cancelled")}`));
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      const stream: Readable = chainStreams(vhd, identity, meter);
      try {
        await targets.transfer(
          stream,
          { kind: "disk", vdiUuid: sourceVdiUuid, sizeHint: disk.virtualSize },
          { what: `disk ${disk.name}`, expectedBytes },
        );
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
      if (targets.live.length === 0) {
        if (nbdFailure !== undefined)
          throw new CbtFallback(`the NBD connection broke while reading disk ${disk.name} (${nbdFailure.message})`, { cause: nbdFailure });
        throw targets.failure();
      }
      await task.succeed(
        {
          bytes: meter.bytes,
          differencing: true,
          nbd: true,
          changedBlocks: indexes.length,
          changed64KiB: changed64k,
          readFromPool: source.bytesRead,
        },
        meter.bytes,
      );
      return { bytes: meter.bytes, differencing: true };
    } catch (error) {
      if (!ctx.signal.aborted) await task.fail(error);
      throw error;
    }
  }

  /**
   * After the restore point is committed and the snapshot marked exported: the snapshot's disks lose their data (CBT
   * metadata kept, found again through `cairn:cbt:vdis`), and the job's older snapshots go with their metadata disks.
   * Failures are warnings: the restore point is made.
   */
  async afterCommit(snapshotRef: string, snapshotDisks: VmDisk[]): Promise<void> {
    const ctx = this.ctx;
    try {
      const map = Object.fromEntries(snapshotDisks.map((disk) => [sourceOf(ctx, disk), disk.vdiUuid]));
      await ctx.ops.setOtherConfig(snapshotRef, { [CBT_VDIS_KEY]: JSON.stringify(map) });
      for (const disk of snapshotDisks) {
        if (ctx.ops.getRecord(disk.vdiRef)?.cbt_enabled !== true) {
          await ctx.task.warn(`disk ${disk.name}: its snapshot has no changed block tracking, so its data stays on the SR`);
          continue;
        }
        // XAPI refuses data_destroy while the VDI has any VBD: the snapshot's goes (the VM snapshot stays, as the base).
        for (const vbd of (ctx.ops.getRecord(disk.vdiRef)?.VBDs as string[] | undefined) ?? []) await this.cbt.destroyVbd(vbd);
        await this.cbt.dataDestroy(disk.vdiRef);
      }
      for (const snapshot of this.jobSnapshots().filter((s) => s.$ref !== snapshotRef)) {
        await ctx.task.run("clean", `remove snapshot ${String(snapshot.name_label ?? snapshot.uuid)} (CBT metadata)`, async () => {
          for (const uuid of Object.values(cbtVdis(snapshot) ?? {})) {
            const vdi = this.cbt.vdiByUuid(uuid);
            if (vdi !== undefined) await this.cbt.destroyVdi(vdi.$ref);
          }
          await ctx.ops.destroySnapshot(snapshot.$ref);
          return { snapshotUuid: snapshot.uuid };
        });
      }
      await ctx.ops.sync();
    } catch (error) {
      await ctx.task.warn(`the snapshot's data could not be destroyed (${messageOf(error)}): it stays on the SR until the next run`);
    }
  }

  private jobSnapshots(): XapiRecord[] {
    return this.ctx.ops.snapshotsOf(this.ctx.vm.uuid, { [OtherConfigKey.BackupJob]: this.ctx.jobId });
  }

  private exportedSnapshots(): XapiRecord[] {
    return this.jobSnapshots().filter((s) => (s.other_config as Record<string, string>)[OtherConfigKey.BackupExported] === "true");
  }
}

function cbtVdis(snapshot: XapiRecord): Record<string, string> | undefined {
  const text = (snapshot.other_config as Record<string, string> | undefined)?.[CBT_VDIS_KEY];
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
    return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
  } catch {
    return undefined; // not ours to read: the snapshot is no CBT base
  }
}
