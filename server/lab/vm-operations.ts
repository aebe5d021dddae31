import type { XapiRecord } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";
import { cloneVdi, createVbd, destroyVbd, snapshotVdi } from "./vdi-operations.js";
import { XapiFailure } from "./xapi-failure.js";
import { newUuid, NULL_REF, xapiDate } from "./xapi-values.js";

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
export async function snapshotVm(pool: LabPool, vm: string, name: unknown, ignoreVdis: unknown, kind: SnapshotKind): Promise<string> {
  const source = kind === "checkpoint" ? checkPowerState(pool, vm, ["Running", "Paused", "Suspended"]) : pool.store.record("VM", vm);
  checkNotBlocked(pool, vm, kind === "quiesced" ? "snapshot_with_quiesce" : kind);
  checkNoConflict(pool, vm, kind === "checkpoint" ? "checkpoint" : "snapshot");
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
      power_state: kind === "checkpoint" && source.power_state === "Running" ? "Suspended" : "Halted",
      snapshot_info: {
        "disk-snapshot-type": kind === "quiesced" ? "quiesced" : "crash_consistent",
        "power-state-at-snapshot": String(source.power_state),
      },
      other_config: otherConfig,
      blocked_operations: {},
      parent: source.parent,
    }),
  );
  for (const vbd of source.VBDs as string[]) {
    if (!pool.store.has("VBD", vbd)) continue;
    const record = pool.store.record("VBD", vbd);
    if (record.VDI !== NULL_REF && ignored.has(record.VDI as string)) continue;
    const vdi = record.type === "Disk" && record.empty !== true ? await snapshotVdi(pool, record.VDI as string) : record.VDI;
    createVbd(pool, { ...copyRecord(record, { VM: snapshot, VDI: vdi, currently_attached: false }), other_config: { owner: "" } });
  }
  copyVifs(pool, source, snapshot);
  pool.store.update("VM", vm, (target) => {
    target.parent = snapshot;
    target.snapshots = [...(target.snapshots as string[]), snapshot];
  });
  return snapshot;
}

/** `VM.clone` (copy-on-write disks) and `VM.copy` (full disk copies, onto `sr` when given). */
export async function cloneVm(pool: LabPool, vm: string, name: unknown, options: { full: boolean; sr?: string }): Promise<string> {
  const source = pool.store.record("VM", vm);
  checkPowerState(pool, vm, source.is_a_snapshot === true ? ["Halted", "Suspended"] : ["Halted"]);
  checkNotBlocked(pool, vm, options.full ? "copy" : "clone");
  checkNoConflict(pool, vm, options.full ? "copy" : "clone");
  const otherConfig = { ...(source.other_config as Record<string, string>), mac_seed: newUuid() };
  const clone = pool.store.create(
    "VM",
    copyRecord(source, {
      name_label: String(name),
      is_a_snapshot: false,
      snapshot_of: NULL_REF,
      snapshot_time: xapiDate(new Date(0)),
      snapshot_info: {},
      power_state: "Halted",
      parent: NULL_REF,
      other_config: otherConfig,
    }),
  );
  for (const vbd of source.VBDs as string[]) {
    if (!pool.store.has("VBD", vbd)) continue;
    const record = pool.store.record("VBD", vbd);
    const vdi =
      record.type === "Disk" && record.VDI !== NULL_REF
        ? await cloneVdi(pool, record.VDI as string, { full: options.full, sr: options.sr })
        : record.VDI;
    createVbd(pool, copyRecord(record, { VM: clone, VDI: vdi, currently_attached: false }));
  }
  copyVifs(pool, source, clone);
  return clone;
}

/** `VM.destroy`: Halted or Suspended only; deletes VBDs and VIFs, keeps the VDIs (XAPI does). */
export function destroyVm(pool: LabPool, vm: string): void {
  const record = checkPowerState(pool, vm, ["Halted", "Suspended"]);
  checkNotBlocked(pool, vm, "destroy");
  checkNoConflict(pool, vm, "destroy");
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

/** Power transitions: sets the state, residence, domid and device attachment. */
export function setPowerState(pool: LabPool, vm: string, state: PowerState): void {
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

/** `VM.start`: from Halted only; templates and snapshots cannot start; the `boot_fails` fault applies. */
export function startVm(pool: LabPool, vm: string, paused: unknown): void {
  const record = checkPowerState(pool, vm, ["Halted"]);
  if (record.is_a_template === true || record.is_a_snapshot === true) throw new XapiFailure("VM_IS_TEMPLATE", [vm]);
  checkNotBlocked(pool, vm, "start");
  checkNoConflict(pool, vm, "start");
  pool.faults.takeBootFailure(vm);
  setPowerState(pool, vm, paused === true ? "Paused" : "Running");
}
