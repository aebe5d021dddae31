import type { XapiRecord } from "./class-defaults.js";
import { vmOperationError } from "./datamodel-operations.js";
import type { LabPool } from "./pool-state.js";
import { cloneVdi, createVbd, destroyVbd, destroyVdi, snapshotVdi } from "./vdi-operations.js";
import { XapiFailure } from "./xapi-failure.js";
import { newRef, newUuid, NULL_REF, xapiDate } from "./xapi-values.js";

export type PowerState = "Halted" | "Paused" | "Running" | "Suspended";

// Links and identities rebuilt by each operation rather than copied.
const NOT_COPIED = [
  "uuid",
  "VBDs",
  "VIFs",
  "snapshots",
  "children",
  "current_operations",
  "allowed_operations",
  "resident_on",
  "domid",
  "metrics",
  "guest_metrics",
  "consoles",
  "crash_dumps",
  "VUSBs",
  "VTPMs",
  "VGPUs",
  "suspend_VDI",
];

function copyRecord(source: XapiRecord, overrides: XapiRecord): XapiRecord {
  const copy = structuredClone(source);
  for (const field of NOT_COPIED) delete copy[field];
  return { ...copy, ...overrides };
}

/** `VM_BAD_POWER_STATE [vm, expected, actual]` unless the VM is in one of `allowed`. */
export function checkPowerState(pool: LabPool, vm: string, allowed: PowerState[]): XapiRecord {
  const record = pool.store.record("VM", vm);
  if (!allowed.includes(record.power_state as PowerState)) {
    throw new XapiFailure("VM_BAD_POWER_STATE", [
      vm,
      allowed.map((state) => state.toLowerCase()).join(", "),
      String(record.power_state).toLowerCase(),
    ]);
  }
  return record;
}

/**
 * `Xapi_vm_lifecycle.assert_operation_valid`, what XAPI checks before every VM operation (blocked, power state,
 * concurrent operations, template, snapshot, control domain... in that order): throws XAPI's error for `operation`.
 */
export function assertVmOperation(pool: LabPool, vm: string, operation: string): XapiRecord {
  const error = vmOperationError(pool, vm, operation);
  if (error !== undefined) throw new XapiFailure(error[0], error[1]);
  return pool.store.record("VM", vm);
}

/** `OPERATION_BLOCKED [vm, reason]` when `operation` is in `blocked_operations`. */
export function checkNotBlocked(pool: LabPool, vm: string, operation: string): void {
  const reason = (pool.store.record("VM", vm).blocked_operations as Record<string, string>)[operation];
  if (reason !== undefined) throw new XapiFailure("OPERATION_BLOCKED", [vm, reason]);
}

const LONG_COPIES = new Set(["clone", "copy", "export"]);

/** `OTHER_OPERATION_IN_PROGRESS ["VM", vm, op, task]` when a conflicting operation runs. */
export function checkNoConflict(pool: LabPool, vm: string, operation: string): void {
  const current = pool.store.record("VM", vm).current_operations as Record<string, string>;
  for (const [task, running] of Object.entries(current)) {
    const compatible =
      (LONG_COPIES.has(running) && (operation === "snapshot" || operation === "checkpoint" || LONG_COPIES.has(operation))) ||
      (["snapshot", "checkpoint"].includes(running) && ["snapshot", "checkpoint"].includes(operation));
    if (!compatible) throw new XapiFailure("OTHER_OPERATION_IN_PROGRESS", ["VM", vm, running, task]);
  }
}

/** Copies the VIFs of `source` onto `target` (same MAC, as XAPI does for snapshots). */
function copyVifs(pool: LabPool, source: XapiRecord, target: string): void {
  for (const vif of source.VIFs as string[]) {
    if (!pool.store.has("VIF", vif)) continue;
    const record = pool.store.record("VIF", vif);
    const ref = pool.store.create("VIF", { ...copyRecord(record, { VM: target, currently_attached: false }) });
    pool.store.addToSet("VM", target, "VIFs", ref);
    pool.store.addToSet("network", record.network as string, "VIFs", ref);
  }
}

export type SnapshotKind = "snapshot" | "checkpoint" | "quiesced";

/** `VM.snapshot`, `VM.checkpoint` and `VM.snapshot_with_quiesce` (`xapi_vm_clone.ml copy_vm_record`). */
export async function snapshotVm(
  pool: LabPool,
  vm: string,
  name: unknown,
  ignoreVdis: unknown,
  kind: SnapshotKind,
  task?: string,
): Promise<string> {
  const source = pool.store.record("VM", vm);
  // snapshot_with_quiesce's own checks are its method's (the `quiesce` fault plays hosts that still have VSS).
  if (kind !== "quiesced") assertVmOperation(pool, vm, kind);
  else {
    checkNotBlocked(pool, vm, "snapshot_with_quiesce");
    checkNoConflict(pool, vm, "snapshot");
  }
  const ignored = new Set(Array.isArray(ignoreVdis) ? ignoreVdis.map(String) : []);
  pool.faults.takeSnapshotFailure(String(source.uuid));
  const otherConfig = { ...(source.other_config as Record<string, string>) };
  delete otherConfig.default_template;
  delete otherConfig.xensource_internal;
  const snapshot = pool.store.create(
    "VM",
    copyRecord(source, {
      name_label: String(name),
      is_a_snapshot: true,
      snapshot_of: vm,
      snapshot_time: xapiDate(),
      is_a_template: true,
      power_state:
        kind === "checkpoint" && (source.power_state === "Running" || source.power_state === "Suspended") ? "Suspended" : "Halted",
      snapshot_info: {
        "disk-snapshot-type": kind === "quiesced" ? "quiesced" : "crash_consistent",
        "power-state-at-snapshot": String(source.power_state),
      },
      other_config: otherConfig,
      blocked_operations: {},
      parent: source.parent,
    }),
  );
  const created: string[] = [];
  try {
    for (const vbd of source.VBDs as string[]) {
      pool.tasks.checkCancelled(task);
      if (!pool.store.has("VBD", vbd)) continue;
      const record = pool.store.record("VBD", vbd);
      if (record.VDI !== NULL_REF && ignored.has(record.VDI as string)) continue;
      let vdi = record.VDI;
      if (record.type === "Disk" && record.empty !== true) {
        vdi = await snapshotVdi(pool, record.VDI as string);
        created.push(vdi as string);
      }
      createVbd(pool, { ...copyRecord(record, { VM: snapshot, VDI: vdi, currently_attached: false }), other_config: { owner: "" } });
    }
    copyVifs(pool, source, snapshot);
    if (kind === "checkpoint") pool.store.update("VM", snapshot, (target) => void (target.suspend_VDI = createSuspendVdi(pool, snapshot)));
  } catch (error) {
    await discard(pool, snapshot, created);
    throw error;
  }
  pool.store.update("VM", vm, (target) => {
    target.parent = snapshot;
    target.snapshots = [...(target.snapshots as string[]), snapshot];
  });
  return snapshot;
}

/**
 * `VM.clone` (copy-on-write disks) and `VM.copy` (full disk copies, onto `sr` when given), as `Xapi_vm_clone.clone`:
 * a Suspended VM (a snapshot, or any VM where the pool's other_config allows it) gives a Suspended clone with a copy of
 * its suspend image; everything else a Halted one.
 */
export async function cloneVm(
  pool: LabPool,
  vm: string,
  name: unknown,
  options: { full: boolean; sr?: string },
  task?: string,
): Promise<string> {
  const source = assertVmOperation(pool, vm, options.full ? "copy" : "clone");
  const otherConfig = { ...(source.other_config as Record<string, string>), mac_seed: newUuid() };
  const suspended = source.power_state === "Suspended";
  const clone = pool.store.create(
    "VM",
    copyRecord(source, {
      name_label: String(name),
      is_a_snapshot: false,
      snapshot_of: NULL_REF,
      snapshot_time: xapiDate(new Date(0)),
      snapshot_info: {},
      power_state: suspended ? "Suspended" : "Halted",
      parent: NULL_REF,
      other_config: otherConfig,
    }),
  );
  const created: string[] = [];
  try {
    for (const vbd of source.VBDs as string[]) {
      pool.tasks.checkCancelled(task);
      if (!pool.store.has("VBD", vbd)) continue;
      const record = pool.store.record("VBD", vbd);
      let vdi = record.VDI;
      if (record.type === "Disk" && record.VDI !== NULL_REF) {
        vdi = await cloneVdi(pool, record.VDI as string, { full: options.full, sr: options.sr });
        created.push(vdi as string);
      }
      createVbd(pool, copyRecord(record, { VM: clone, VDI: vdi, currently_attached: false }));
    }
    copyVifs(pool, source, clone);
    if (suspended && pool.store.has("VDI", source.suspend_VDI)) {
      const image = await cloneVdi(pool, source.suspend_VDI as string, { full: options.full, sr: options.sr });
      created.push(image);
      pool.store.update("VM", clone, (target) => void (target.suspend_VDI = image));
    }
  } catch (error) {
    // Xapi_vm_clone.clone: a failed (or cancelled) clone leaves neither the new VM nor its disks.
    await discard(pool, clone, created);
    throw error;
  }
  return clone;
}

/** Removes a VM an operation was making (its VBDs, VIFs, suspend image) and the disks it had made for it. */
async function discard(pool: LabPool, vm: string, disks: string[]): Promise<void> {
  const record = pool.store.record("VM", vm);
  for (const vbd of record.VBDs as string[]) if (pool.store.has("VBD", vbd)) destroyVbd(pool, vbd);
  for (const vif of record.VIFs as string[]) {
    if (!pool.store.has("VIF", vif)) continue;
    pool.store.removeFromSet("network", pool.store.record("VIF", vif).network as string, "VIFs", vif);
    pool.store.destroy("VIF", vif);
  }
  if (pool.store.has("VDI", record.suspend_VDI)) disks.push(record.suspend_VDI as string);
  pool.store.destroy("VM", vm);
  for (const vdi of disks) if (pool.store.has("VDI", vdi)) await destroyVdi(pool, vdi);
}

/** `VM.destroy`: Halted or Suspended only; deletes VBDs and VIFs, keeps the VDIs (XAPI does). */
export function destroyVm(pool: LabPool, vm: string): void {
  const record = assertVmOperation(pool, vm, "destroy");
  for (const vbd of record.VBDs as string[]) if (pool.store.has("VBD", vbd)) destroyVbd(pool, vbd);
  for (const vif of record.VIFs as string[]) {
    if (!pool.store.has("VIF", vif)) continue;
    const network = pool.store.record("VIF", vif).network as string;
    pool.store.destroy("VIF", vif);
    pool.store.removeFromSet("network", network, "VIFs", vif);
  }
  pool.store.destroy("VM", vm);
  if (record.snapshot_of !== NULL_REF) pool.store.removeFromSet("VM", record.snapshot_of as string, "snapshots", vm);
  for (const snapshot of record.snapshots as string[]) {
    if (pool.store.has("VM", snapshot)) pool.store.update("VM", snapshot, (target) => void (target.snapshot_of = NULL_REF));
  }
}

/**
 * A suspend image for `vm` (VM.suspend and VM.checkpoint write one): a VDI of type `suspend` on the pool's
 * suspend_image_SR, as large as the VM's memory (sparse: it costs nothing). @returns its ref.
 */
export function createSuspendVdi(pool: LabPool, vm: string): string {
  const record = pool.store.record("VM", vm);
  const poolRecord = pool.store.record("pool", pool.poolRef);
  const sr = pool.store.has("SR", poolRecord.suspend_image_SR) ? (poolRecord.suspend_image_SR as string) : pool.defaultSr;
  const location = newUuid();
  const size = Number(record.memory_static_max);
  // The disk store queues its changes: the image exists before anything can read or copy it.
  pool.disks.create(location, size).catch(() => undefined);
  const ref = pool.store.create(
    "VDI",
    {
      name_label: `Suspend image for VM ${String(record.name_label)}`,
      name_description: "",
      SR: sr,
      location,
      virtual_size: size,
      type: "suspend",
      other_config: { vm_ref: vm },
    },
    newRef(),
  );
  pool.store.addToSet("SR", sr, "VDIs", ref);
  return ref;
}

/** Power transitions: sets the state, residence, domid and device attachment, and the suspend image of a Suspended VM. */
export function setPowerState(pool: LabPool, vm: string, state: PowerState): void {
  const before = pool.store.record("VM", vm);
  if (state === "Suspended" && !pool.store.has("VDI", before.suspend_VDI)) {
    const image = createSuspendVdi(pool, vm);
    pool.store.update("VM", vm, (target) => void (target.suspend_VDI = image));
  } else if (state !== "Suspended" && before.suspend_VDI !== NULL_REF) {
    const image = before.suspend_VDI as string;
    pool.store.update("VM", vm, (target) => void (target.suspend_VDI = NULL_REF));
    if (pool.store.has("VDI", image)) destroyVdi(pool, image).catch(() => undefined);
  }
  const running = state !== "Halted";
  const record = pool.store.update("VM", vm, (target) => {
    target.power_state = state;
    target.resident_on = running ? pool.hostRef : NULL_REF;
    target.domid = running ? (target.domid === -1 ? 10 + pool.store.count("VM") : target.domid) : -1;
  });
  for (const device of [
    ...(record.VBDs as string[]).map((ref) => ["VBD", ref] as const),
    ...(record.VIFs as string[]).map((ref) => ["VIF", ref] as const),
  ]) {
    if (pool.store.has(device[0], device[1]))
      pool.store.update(device[0], device[1], (target) => void (target.currently_attached = running));
  }
  if (running) pool.store.addToSet("host", pool.hostRef, "resident_VMs", vm);
  else pool.store.removeFromSet("host", pool.hostRef, "resident_VMs", vm);
}

/** `VM.start`: XAPI's checks (a Suspended VM is resumed, not started: VM_BAD_POWER_STATE), then the `boot_fails` fault. */
export function startVm(pool: LabPool, vm: string, paused: unknown): void {
  assertVmOperation(pool, vm, "start");
  pool.faults.takeBootFailure(vm);
  setPowerState(pool, vm, paused === true ? "Paused" : "Running");
}
