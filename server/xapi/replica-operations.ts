/**
 * The XAPI operations of replication (DR, CR) over one pool connection: making an imported VM a replica (named, tagged,
 * marked, its start blocked), finding a job's replicas and replica snapshots by their marks, writing a VHD onto an existing
 * disk (`PUT /import_raw_vdi?format=vhd`), and destroying a VM with its disks.
 */
import type { Readable } from "node:stream";
import { cancellableUpload } from "./put-with-task.js";
import { OtherConfigKey, REPLICA_START_BLOCKED_REASON, Tag } from "./other-config-keys.js";
import type { PoolConnection, XapiRecord } from "./pool-connection.js";
import { VmOperations } from "./vm-operations.js";

/** The keys an exported snapshot carries that must not follow it onto its replica (they would make the replica's snapshots look like the source's). */
const SOURCE_KEYS = [
  OtherConfigKey.BackupJob,
  OtherConfigKey.BackupSchedule,
  OtherConfigKey.BackupVm,
  OtherConfigKey.BackupDatetime,
  OtherConfigKey.BackupExported,
  OtherConfigKey.DeltaChainLength,
  OtherConfigKey.CairnRun,
];

/** What marks a replica (and, copied by VM.snapshot, its snapshots). */
export interface ReplicaMarks {
  of: string;
  job: string;
  schedule: string;
  sr: string;
  datetime: string;
  mode: "DISASTER_RECOVERY" | "CONTINUOUS_REPLICATION";
  /** CR: the source snapshot the replica's disks equal. */
  base?: string;
}

export function marksToOtherConfig(marks: Partial<ReplicaMarks>): Record<string, string> {
  const entries: [string, string | undefined][] = [
    [OtherConfigKey.ReplicaOf, marks.of],
    [OtherConfigKey.ReplicaJob, marks.job],
    [OtherConfigKey.ReplicaSchedule, marks.schedule],
    [OtherConfigKey.ReplicaSr, marks.sr],
    [OtherConfigKey.ReplicaDatetime, marks.datetime],
    [OtherConfigKey.ReplicaMode, marks.mode],
    [OtherConfigKey.ReplicaBase, marks.base],
  ];
  return Object.fromEntries(entries.filter((e): e is [string, string] => e[1] !== undefined));
}

export class ReplicaOperations {
  readonly ops: VmOperations;

  constructor(readonly connection: PoolConnection) {
    this.ops = new VmOperations(connection);
  }

  /**
   * Makes a freshly imported VM a replica: a plain halted VM (not a template) named `name`, without the source snapshot's
   * backup keys, marked with `marks`, tagged {@link Tag.Replica}, and its start blocked with {@link REPLICA_START_BLOCKED_REASON}.
   */
  async makeReplica(vmRef: string, options: { name: string; description: string; marks: ReplicaMarks }): Promise<XapiRecord> {
    await this.ops.sync();
    const record = this.ops.getRecord(vmRef);
    const current = (record?.other_config as Record<string, string> | undefined) ?? {};
    await this.ops.setName(vmRef, options.name, options.description);
    await this.ops.unsetTemplate(vmRef);
    await this.ops.removeOtherConfig(
      vmRef,
      SOURCE_KEYS.filter((key) => key in current),
    );
    await this.ops.addTags(vmRef, [Tag.Replica]);
    await this.blockStart(vmRef);
    await this.ops.setOtherConfig(vmRef, marksToOtherConfig(options.marks));
    const updated = this.ops.getRecord(vmRef);
    if (!updated) throw new Error(`the replica ${vmRef} vanished while it was being configured`);
    return updated;
  }

  /** `blocked_operations.start` = the replica reason (replacing any other reason). */
  async blockStart(vmRef: string): Promise<void> {
    await this.ops.blockOperation(vmRef, "start", REPLICA_START_BLOCKED_REASON);
  }

  /** Replica VMs (not snapshots) carrying every given mark, oldest (by replica datetime) first. Set-aside replicas are left out. */
  replicas(marks: Partial<ReplicaMarks>): XapiRecord[] {
    return this.marked(marks)
      .filter((vm) => !vm.is_a_snapshot && !(vm.other_config as Record<string, string>)[OtherConfigKey.ReplicaSuperseded])
      .sort(byDatetime);
  }

  /** Replica snapshots carrying every given mark, oldest first (they keep the marks of their replica at snapshot time). */
  replicaSnapshots(marks: Partial<ReplicaMarks>): XapiRecord[] {
    return this.marked(marks)
      .filter((vm) => vm.is_a_snapshot)
      .sort(byDatetime);
  }

  private marked(marks: Partial<ReplicaMarks>): XapiRecord[] {
    const wanted = Object.entries(marksToOtherConfig(marks));
    return this.connection.records("VM").filter((vm) => {
      const config = (vm.other_config as Record<string, string> | undefined) ?? {};
      return config[OtherConfigKey.ReplicaOf] !== undefined && wanted.every(([key, value]) => config[key] === value);
    });
  }

  /**
   * Writes a VHD (dynamic or differencing) onto an existing disk: `PUT /import_raw_vdi/?vdi=<ref>&format=vhd`; XAPI applies
   * the allocated sectors over the disk's content. `body.length` must be the VHD's exact size: XAPI gives Content-Length to
   * vhd-tool as the destination size and reads the closing footer at its last sector (import_raw_vdi.ml, vhd_tool_wrapper.ml
   * `receive`), and refuses a chunked VHD. Cancelling (or a failing body) destroys the body and cancels XAPI's task
   * ({@link cancellableUpload}).
   */
  async importVhd(vdiRef: string, body: Readable & { length: number }, signal: AbortSignal): Promise<void> {
    await cancellableUpload(this.connection, {
      path: "/import_raw_vdi/",
      query: { vdi: vdiRef, format: "vhd" },
      body,
      taskName: "Cairn replication",
      taskDescription: "import of a disk delta onto a replica",
      what: "import of the disk delta",
      stoppedPrefix: "stopped",
      signal,
    });
  }

  /** Destroys a VM (or snapshot) and its disks, shutting it down first when it runs. */
  async destroyVm(vmRef: string): Promise<void> {
    await this.ops.destroyVm(vmRef);
  }
}

function byDatetime(a: XapiRecord, b: XapiRecord): number {
  const key = (vm: XapiRecord) =>
    `${(vm.other_config as Record<string, string>)[OtherConfigKey.ReplicaDatetime] ?? ""} ${String(vm.snapshot_time ?? "")}`;
  return key(a).localeCompare(key(b));
}

/** XAPI's `Constants.max_vhd_size`: the largest disk `export_raw_vdi?format=vhd` accepts (2040 GiB). */
export const MAX_VHD_EXPORT_BYTES = 2040 * 1024 ** 3;

/** XAPI cannot export a difference of this disk at all (not a VHD, or too large): deltas of it are impossible. */
export class DeltaImpossibleError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "DeltaImpossibleError";
  }
}

/**
 * Why XAPI cannot export a disk as a VHD delta, when `error` (its export task's failure) says so; undefined for any other
 * failure. Both come after XAPI's 200 headers, with an empty body (export_raw_vdi.ml, vhd_tool_wrapper.ml `send`):
 * `VDI_TOO_LARGE [vdi, max]` for a disk above 2040 GiB, and `INTERNAL_ERROR [Failure("Cannot compute differences on
 * non-VHD images")]` (or "... base VDI is not a vhd ...") for a disk on an SR that does not store VHDs (raw LVs, raw
 * devices). `disk` names the disk for a person.
 */
export function deltaImpossibleReason(error: unknown, disk: string): string | undefined {
  const e = error as { code?: unknown; params?: unknown } | undefined;
  const params = Array.isArray(e?.params) ? e.params.map(String) : [];
  if (e?.code === "VDI_TOO_LARGE") {
    return `disk ${disk} is larger than 2040 GiB, the most a VHD can describe: XAPI exports no delta of it (VDI_TOO_LARGE)`;
  }
  if (e?.code === "INTERNAL_ERROR" && params.some((p) => /non-VHD images|base VDI is not a vhd/.test(p))) {
    return `disk ${disk} is not stored as a VHD on its SR: XAPI cannot compute a delta of it ("Cannot compute differences on non-VHD images")`;
  }
  return undefined;
}
