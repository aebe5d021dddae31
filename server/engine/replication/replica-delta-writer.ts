/**
 * A replica of continuous replication taking a delta, as a {@link TargetWriter}.
 */
import type { Readable } from "node:stream";

import { messageOf } from "../../errors.js";
import { byteMeter } from "../../streams/byte-meter.js";
import { chainStreams } from "../../streams/stream-chain.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { VmDisk } from "../../xapi/vm-operations.js";
import type { VmBackupContext } from "../backup/backup-context.js";
import type { TargetWriter } from "../writers/target-set.js";
import type { ReplicaTarget } from "./replica-targets.js";
import { withVhdLength } from "./vhd-upload-length.js";

/** A replica that can take a delta: each of the snapshot's disks with its base disk and the replica's disk to write onto. */
export interface DeltaPlan {
  kind: "delta";
  replica: XapiRecord;
  disks: { source: VmDisk; base: VmDisk; replicaVdiRef: string }[];
}

/**
 * A replica taking a delta: prepare = the replica marked "being updated" by this run; write = one disk's differencing VHD
 * onto the replica's disk (`PUT /import_raw_vdi?format=vhd`); commit = nothing here (vm-continuous-replication.ts's
 * finishUpdate marks it, once every target is done); abort = a replica that may have been written matches no base any
 * more, so its base mark is emptied (the next run gives it a full, without a "diverged" warning), else only the "being
 * updated" mark is removed.
 */
export class ReplicaDeltaWriter implements TargetWriter<number, void, void> {
  /** Whether a disk import onto the replica started. */
  private written = false;

  constructor(
    private readonly ctx: VmBackupContext,
    readonly target: ReplicaTarget,
    readonly plan: DeltaPlan,
  ) {}

  get name(): string {
    return this.target.name;
  }

  async prepare(): Promise<void> {
    await this.target.replicas.ops.setOtherConfig(this.plan.replica.$ref, { [OtherConfigKey.ReplicaUpdating]: this.ctx.runId });
  }

  async write(diskIndex: number, stream: Readable, signal: AbortSignal): Promise<number> {
    const disk = this.plan.disks[diskIndex];
    // XAPI takes Content-Length as the VHD's size (it reads the closing footer there): it must be exact.
    const sized = await withVhdLength(stream, `disk ${disk.source.name} (${disk.source.userdevice})`);
    this.written = true;
    const counted = Object.assign(
      chainStreams(
        sized,
        byteMeter(() => undefined, 0),
      ),
      { length: sized.length },
    );
    await this.target.replicas.importVhd(disk.replicaVdiRef, counted, signal);
    return counted.bytes;
  }

  async commit(): Promise<void> {
    // Completed by finishUpdate (marks, snapshot, restore point), with the full targets.
  }

  async abort(): Promise<string | undefined> {
    const ops = this.target.replicas.ops;
    const ref = this.plan.replica.$ref;
    // Dropped while the run went on: partly written or not, it is replaced by a full next time. Stopped: only a replica a
    // delta was written onto is.
    if (this.written || !this.ctx.signal.aborted) {
      try {
        await ops.setOtherConfig(ref, { [OtherConfigKey.ReplicaBase]: "" });
        await ops.removeOtherConfig(ref, [OtherConfigKey.ReplicaUpdating]);
      } catch (error) {
        return `${this.target.name}: the replica could not be marked incomplete (${messageOf(error)})`;
      }
      return undefined;
    }
    try {
      await ops.removeOtherConfig(ref, [OtherConfigKey.ReplicaUpdating]);
    } catch (error) {
      return `${this.target.name}: ${messageOf(error)}`;
    }
    return undefined;
  }
}
