/**
 * The XAPI operations a backup needs, typed, over one pool connection: disks of a VM, snapshots (with the quiesce fallback),
 * other_config, destroying a snapshot with its disks, and the export streams; and what restores and health checks do to the
 * VMs they create (name, tags, start, copy, destroy).
 */
import { PassThrough, type Readable } from "node:stream";
import { CairnError, ErrorCode } from "../errors.js";
import type { PoolConnection, XapiRecord } from "./pool-connection.js";
import { describeXapiError, isNetworkError } from "./pool-connection.js";
import { OtherConfigKey } from "./other-config-keys.js";

export interface VmDisk {
  vbdRef: string;
  vdiRef: string;
  vdiUuid: string;
  name: string;
  virtualSize: number;
  userdevice: string;
  srRef: string;
}

export interface ExportStream {
  body: Readable;
  /** Resolves when XAPI's export task succeeded, rejects with its error. */
  done: Promise<void>;
}

export interface SnapshotResult {
  ref: string;
  uuid: string;
  quiesced: boolean;
  /** Why a quiesced snapshot was asked for but not made. */
  quiesceFallback?: string;
}

/** The parts of the xen-api client the export/import calls use (typed in server/xapi/xen-api.d.ts). */
interface ResourceClient {
  getResource(path: string, options: { query: Record<string, string> }): Promise<{ body: Readable; task?: Promise<unknown> }>;
  getObjectByRef(ref: string, defaultValue?: unknown): XapiRecord | undefined;
  barrier(ref?: string): Promise<void>;
}

/** GET attempts of an export whose connection is lost before the answer. */
const EXPORT_ATTEMPTS = 3;

export class VmOperations {
  constructor(private readonly connection: PoolConnection) {}

  private get xapi() {
    return this.connection.xapi;
  }

  private get resources(): ResourceClient {
    return this.connection.xapi as unknown as ResourceClient;
  }

  findVm(uuid: string): XapiRecord | undefined {
    return this.connection.records("VM").find((vm) => vm.uuid === uuid && !vm.is_a_snapshot && !vm.is_a_template);
  }

  getRecord(ref: string): XapiRecord | undefined {
    return this.resources.getObjectByRef(ref, undefined);
  }

  /** The VM's (or snapshot's) disks: VBDs of type Disk with a VDI, in userdevice order. */
  disks(vm: XapiRecord): VmDisk[] {
    const disks: VmDisk[] = [];
    for (const vbdRef of (vm.VBDs as string[]) ?? []) {
      const vbd = this.getRecord(vbdRef);
      if (!vbd || vbd.type !== "Disk" || !vbd.VDI || vbd.VDI === "OpaqueRef:NULL") continue;
      const vdi = this.getRecord(vbd.VDI as string);
      if (!vdi) continue;
      disks.push({
        vbdRef,
        vdiRef: vdi.$ref,
        vdiUuid: vdi.uuid,
        name: String(vdi.name_label ?? ""),
        virtualSize: Number(vdi.virtual_size ?? 0),
        userdevice: String(vbd.userdevice ?? ""),
        srRef: String(vdi.SR ?? ""),
      });
    }
    return disks.sort((a, b) => a.userdevice.localeCompare(b.userdevice, undefined, { numeric: true }));
  }

  /**
   * Snapshots a VM. With `quiesce`, tries VM.snapshot_with_quiesce first and falls back to VM.snapshot when the host or the
   * guest cannot quiesce (the reason is returned, for a warning). The snapshot is then tagged, `firstTags` before anything
   * else (what ties it to its run: a process killed in the middle of the tagging leaves it findable), then `otherConfig`
   * and is_a_template false (a plain VM record, as Xen Orchestra makes it) together.
   */
  async snapshot(
    vmRef: string,
    name: string,
    options: { quiesce: boolean; firstTags?: Record<string, string>; otherConfig: Record<string, string> },
  ): Promise<SnapshotResult> {
    let ref: string | undefined;
    let quiesced = false;
    let quiesceFallback: string | undefined;
    if (options.quiesce) {
      try {
        ref = (await this.xapi.callAsync("VM.snapshot_with_quiesce", vmRef, name)) as string;
        quiesced = true;
      } catch (error) {
        quiesceFallback = describeXapiError(error);
      }
    }
    ref ??= (await this.xapi.callAsync("VM.snapshot", vmRef, name)) as string;
    try {
      if (options.firstTags) await this.putOtherConfig(ref, options.firstTags, "VM");
      await settleAll([this.putOtherConfig(ref, options.otherConfig, "VM"), this.xapi.call("VM.set_is_a_template", ref, false)]);
      await this.resources.barrier(ref);
    } catch (error) {
      // The tagging's error is the one to report; a snapshot left untagged is found by the interrupted-run cleanup by name.
      await this.destroySnapshot(ref).catch(() => undefined);
      throw error;
    }
    const record = this.getRecord(ref);
    if (!record) throw new CairnError(ErrorCode.Internal, `Snapshot ${ref} is not visible after its creation.`);
    return { ref, uuid: record.uuid, quiesced, quiesceFallback };
  }

  /** Sets other_config entries and waits until the client's cache shows them (the next decision reads the cache). */
  async setOtherConfig(ref: string, entries: Record<string, string>, type = "VM"): Promise<void> {
    await this.putOtherConfig(ref, entries, type);
    await this.resources.barrier(ref);
  }

  /**
   * Per key, not one set_other_config: a whole-map write would undo what another tool changed meanwhile. The keys go
   * concurrently (each its own remove-then-add): one after another, a snapshot's five tags cost ten round trips.
   */
  private async putOtherConfig(ref: string, entries: Record<string, string>, type: string): Promise<void> {
    await settleAll(
      Object.entries(entries).map(async ([key, value]) => {
        await this.xapi.call(`${type}.remove_from_other_config`, ref, key);
        await this.xapi.call(`${type}.add_to_other_config`, ref, key, value);
      }),
    );
  }

  /** Waits until the client's cache reflects every change made so far. */
  async sync(): Promise<void> {
    await this.resources.barrier();
  }

  /** Destroys a snapshot (or halted copy) and its disks; an already destroyed one is not an error. */
  async destroySnapshot(ref: string): Promise<void> {
    const record = this.getRecord(ref);
    const vdis = record ? this.disks(record).map((d) => d.vdiRef) : [];
    await this.ignoreMissing(() => this.xapi.call("VM.destroy", ref));
    for (const vdi of vdis) await this.ignoreMissing(() => this.xapi.call("VDI.destroy", vdi));
    await this.resources.barrier();
  }

  /** Removes other_config entries (an absent key is no error for XAPI). */
  async removeOtherConfig(ref: string, keys: readonly string[]): Promise<void> {
    for (const key of keys) await this.xapi.call("VM.remove_from_other_config", ref, key);
  }

  /** Names a VM (label and description). */
  async setName(vmRef: string, label: string, description: string): Promise<void> {
    await this.xapi.call("VM.set_name_label", vmRef, label);
    await this.xapi.call("VM.set_name_description", vmRef, description);
  }

  /** Makes the VM a plain VM (a copy of a snapshot may come out as a template). */
  async unsetTemplate(vmRef: string): Promise<void> {
    await this.xapi.call("VM.set_is_a_template", vmRef, false);
  }

  async addTags(vmRef: string, tags: readonly string[]): Promise<void> {
    for (const tag of tags) await this.xapi.call("VM.add_tags", vmRef, tag);
  }

  async removeTags(vmRef: string, tags: readonly string[]): Promise<void> {
    for (const tag of tags) await this.xapi.call("VM.remove_tags", vmRef, tag);
  }

  /** Removes any block on an operation (e.g. `start`). */
  async unblockOperation(vmRef: string, operation: string): Promise<void> {
    await this.xapi.call("VM.remove_from_blocked_operations", vmRef, operation);
  }

  /** `blocked_operations[operation]` = `reason`, replacing any other reason. */
  async blockOperation(vmRef: string, operation: string, reason: string): Promise<void> {
    await this.xapi.call("VM.remove_from_blocked_operations", vmRef, operation);
    await this.xapi.call("VM.add_to_blocked_operations", vmRef, operation, reason);
  }

  /** Starts a halted VM (not paused, not forced); XAPI's error is said as "VM.start failed: ...". */
  async start(vmRef: string): Promise<void> {
    try {
      await this.xapi.callAsync("VM.start", vmRef, false, false);
    } catch (error) {
      throw new Error(`VM.start failed: ${describeXapiError(error)}`, { cause: error });
    }
  }

  /** `VM.copy` of a VM, snapshot or replica onto an SR (full disk copies, new uuids); @returns the new VM's ref. */
  async copy(vmRef: string, name: string, srRef: string): Promise<string> {
    return String(await this.xapi.callAsync("VM.copy", vmRef, name, srRef));
  }

  /** Destroys a VM (or snapshot) and its disks, shutting it down first when it runs; an absent one is no error. */
  async destroyVm(vmRef: string): Promise<void> {
    await this.sync();
    const record = this.getRecord(vmRef);
    if (!record) return;
    if (!record.is_a_snapshot && record.power_state !== "Halted") await this.xapi.callAsync("VM.hard_shutdown", vmRef);
    await this.destroySnapshot(vmRef);
  }

  /** Snapshots of a VM carrying the given other_config entries, oldest first. */
  snapshotsOf(vmUuid: string, match: Record<string, string>): XapiRecord[] {
    return this.connection
      .records("VM")
      .filter((vm) => vm.is_a_snapshot && (vm.other_config as Record<string, string> | undefined)?.["xo:backup:vm"] === vmUuid)
      .filter((vm) => Object.entries(match).every(([k, v]) => (vm.other_config as Record<string, string>)[k] === v))
      .sort((a, b) => String(a.snapshot_time).localeCompare(String(b.snapshot_time)));
  }

  /**
   * Every snapshot of one of Cairn's runs (to clean after an interrupted run): tagged with the run, or, when `nameMark` is
   * given, not tagged by any backup job yet and named with that mark (the run died between VM.snapshot and the tagging).
   */
  snapshotsOfRun(runId: string, nameMark?: string): XapiRecord[] {
    return this.connection.records("VM").filter((vm) => {
      if (!vm.is_a_snapshot) return false;
      const config = (vm.other_config as Record<string, string> | undefined) ?? {};
      if (config[OtherConfigKey.CairnRun] === runId) return true;
      return (
        nameMark !== undefined &&
        config[OtherConfigKey.BackupJob] === undefined &&
        String(vm.name_label ?? "").startsWith("[cairn] ") &&
        String(vm.name_label).endsWith(nameMark)
      );
    });
  }

  /**
   * GET /export of a VM or snapshot as an XVA, compressed by the host when asked. `done` settles with XAPI's task: a body
   * that ends early (a dropped connection) looks complete to HTTP, and only the task's failure tells.
   */
  async exportXva(ref: string, compression: "NONE" | "GZIP" | "ZSTD"): Promise<ExportStream> {
    const useCompression = compression === "GZIP" ? "true" : compression === "ZSTD" ? "zstd" : "false";
    return this.export("/export/", { ref, use_compression: useCompression });
  }

  /** GET /export_raw_vdi as a VHD: dynamic, or differencing against `baseRef` (the disk's snapshot at the previous backup). */
  async exportVhd(vdiRef: string, baseRef: string | undefined): Promise<ExportStream> {
    const query: Record<string, string> = { vdi: vdiRef, format: "vhd" };
    if (baseRef) query.base = baseRef;
    return this.export("/export_raw_vdi/", query);
  }

  /**
   * The GET of an export. A connection lost before the answer is retried from the start (nothing was consumed yet), up to
   * {@link EXPORT_ATTEMPTS} times; a body cut later cannot be (its first bytes are already downstream) and fails with
   * {@link PoolUnreachableError}, as does the last failed attempt.
   */
  private async export(path: string, query: Record<string, string>): Promise<ExportStream> {
    let response: { body: Readable; task?: Promise<unknown> };
    for (let attempt = 1; ; attempt++) {
      try {
        response = await this.resources.getResource(path, { query });
        break;
      } catch (error) {
        if (!isNetworkError(error)) throw error;
        if (attempt >= EXPORT_ATTEMPTS) throw this.connection.unreachable(error);
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
      }
    }
    let lost: Error | undefined;
    // A host that cut the connection fails its task for that reason: the lost connection is the verdict to report. The body
    // is close-delimited (a cut looks like its end), so the event watch losing the pool meanwhile is what tells.
    const started = Date.now();
    const done = (response.task ?? Promise.resolve()).then(
      () => undefined,
      (error) => {
        if (lost === undefined && this.connection.lostSince(started)) {
          lost = this.connection.unreachable(
            error,
            `the connection was lost during the transfer (XAPI's task: ${describeXapiError(error)})`,
          );
        }
        throw lost ?? error;
      },
    );
    done.catch(() => undefined); // observed by the caller; never an unhandled rejection
    const source = response.body;
    const body = new PassThrough();
    // The downstream sees "pool X is unreachable (host): ..." rather than undici's "other side closed".
    source.on("error", (error) => {
      if (isNetworkError(error)) lost ??= this.connection.unreachable(error);
      body.destroy(lost ?? error);
    });
    body.on("close", () => {
      if (!source.destroyed && !body.writableFinished) source.destroy();
    });
    source.pipe(body);
    return { body, done };
  }

  private async ignoreMissing(call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (error) {
      if ((error as { code?: string }).code !== "HANDLE_INVALID") throw error;
    }
  }
}

/**
 * Awaits every call, then throws the first failure: a caller that handles the failure (destroying the snapshot, say) never
 * races a call still in flight.
 */
async function settleAll(calls: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(calls);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed) throw failed.reason;
}
