import type { XapiRecord } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";
import { XapiFailure } from "./xapi-failure.js";
import { newUuid, NULL_REF, xapiDate } from "./xapi-values.js";

/** The fields `VDI.snapshot` / `VDI.clone` copy from the source (`xapi_vdi.ml`). */
const COPIED_FIELDS = [
  "name_label",
  "name_description",
  "type",
  "sharable",
  "other_config",
  "xenstore_data",
  "on_boot",
  "allow_caching",
  "tags",
  "sm_config",
  "virtual_size",
];

function copiedFields(source: XapiRecord): XapiRecord {
  return Object.fromEntries(COPIED_FIELDS.map((field) => [field, structuredClone(source[field])]));
}

/** Adds a VDI record for an existing disk `location` and links it into its SR. */
export function addVdiRecord(pool: LabPool, fields: XapiRecord & { SR: string; location: string }): string {
  const ref = pool.store.create("VDI", { ...fields, physical_utilisation: pool.disks.allocatedBytes(fields.location) });
  pool.store.addToSet("SR", fields.SR, "VDIs", ref);
  return ref;
}

/** `VDI.create`: a zero-filled sparse disk of `virtual_size` bytes on `SR`. */
export async function createVdi(pool: LabPool, record: XapiRecord): Promise<string> {
  const sr = record.SR;
  pool.store.get("SR", sr);
  const size = Number(record.virtual_size);
  if (!Number.isSafeInteger(size) || size < 0) throw new XapiFailure("FIELD_TYPE_ERROR", ["virtual_size"]);
  const location = newUuid();
  await pool.disks.create(location, size);
  return addVdiRecord(pool, { ...record, virtual_size: size, SR: sr as string, location, VBDs: [], snapshots: [] });
}

/** `VDI.snapshot`: a frozen copy-on-write image (shares every block; costs no data copy). */
export async function snapshotVdi(pool: LabPool, vdi: string): Promise<string> {
  const source = pool.store.record("VDI", vdi);
  pool.faults.takeSnapshotFailure(String(source.uuid));
  const location = newUuid();
  await pool.disks.share(source.location as string, location);
  const ref = addVdiRecord(pool, {
    ...copiedFields(source),
    SR: source.SR as string,
    location,
    is_a_snapshot: true,
    snapshot_of: vdi,
    snapshot_time: xapiDate(),
    // A snapshot takes over its VDI's CBT log (SM's _cbt_snapshot); clones and copies start without CBT.
    cbt_enabled: source.cbt_enabled === true,
  });
  pool.store.addToSet("VDI", vdi, "snapshots", ref);
  return ref;
}

/** `VDI.clone` (copy-on-write, like snapshot but a normal VDI) or, with `full`, a real copy onto `sr`. */
export async function cloneVdi(pool: LabPool, vdi: string, options: { full?: boolean; sr?: string } = {}): Promise<string> {
  const source = pool.store.record("VDI", vdi);
  const sr = options.sr !== undefined && options.sr !== NULL_REF ? options.sr : (source.SR as string);
  pool.store.get("SR", sr);
  const location = newUuid();
  if (options.full === true) await pool.disks.copy(source.location as string, location);
  else await pool.disks.share(source.location as string, location);
  return addVdiRecord(pool, { ...copiedFields(source), SR: sr, location });
}

/** `VDI.destroy`: `VDI_IN_USE [vdi, "destroy"]` while an attached VBD uses it; otherwise drops its VBDs too. */
export async function destroyVdi(pool: LabPool, vdi: string): Promise<void> {
  const record = pool.store.record("VDI", vdi);
  const vbds = record.VBDs as string[];
  if (vbds.some((vbd) => pool.store.has("VBD", vbd) && pool.store.record("VBD", vbd).currently_attached === true)) {
    throw new XapiFailure("VDI_IN_USE", [vdi, "destroy"]);
  }
  for (const vbd of vbds) if (pool.store.has("VBD", vbd)) destroyVbd(pool, vbd);
  pool.store.destroy("VDI", vdi);
  pool.store.removeFromSet("SR", record.SR as string, "VDIs", vdi);
  if (record.snapshot_of !== NULL_REF) pool.store.removeFromSet("VDI", record.snapshot_of as string, "snapshots", vdi);
  for (const snapshot of record.snapshots as string[]) {
    if (pool.store.has("VDI", snapshot)) pool.store.update("VDI", snapshot, (target) => void (target.snapshot_of = NULL_REF));
  }
  await pool.disks.destroy(record.location as string);
}

export async function resizeVdi(pool: LabPool, vdi: string, size: unknown): Promise<void> {
  const record = pool.store.record("VDI", vdi);
  const bytes = Number(size);
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new XapiFailure("FIELD_TYPE_ERROR", ["new_size"]);
  await pool.disks.resize(record.location as string, bytes);
  pool.store.update("VDI", vdi, (target) => {
    target.virtual_size = bytes;
  });
  refreshUtilisation(pool, vdi);
}

/** Recomputes `physical_utilisation` after writes. */
export function refreshUtilisation(pool: LabPool, vdi: string): void {
  if (!pool.store.has("VDI", vdi)) return;
  const bytes = pool.disks.allocatedBytes(pool.store.record("VDI", vdi).location as string);
  if (pool.store.record("VDI", vdi).physical_utilisation !== bytes) {
    pool.store.update("VDI", vdi, (target) => void (target.physical_utilisation = bytes));
  }
}

/** Adds a VBD record linked from its VM and VDI. */
export function createVbd(pool: LabPool, fields: XapiRecord): string {
  const vm = fields.VM as string;
  pool.store.get("VM", vm);
  const vdi = (fields.VDI as string | undefined) ?? NULL_REF;
  if (vdi !== NULL_REF) pool.store.get("VDI", vdi);
  const ref = pool.store.create("VBD", { ...fields, VDI: vdi, empty: vdi === NULL_REF ? true : (fields.empty ?? false) });
  pool.store.addToSet("VM", vm, "VBDs", ref);
  if (vdi !== NULL_REF) pool.store.addToSet("VDI", vdi, "VBDs", ref);
  return ref;
}

export function destroyVbd(pool: LabPool, vbd: string): void {
  const record = pool.store.record("VBD", vbd);
  pool.store.destroy("VBD", vbd);
  pool.store.removeFromSet("VM", record.VM as string, "VBDs", vbd);
  if (record.VDI !== NULL_REF) pool.store.removeFromSet("VDI", record.VDI as string, "VBDs", vbd);
}

/** `SR.scan`: recomputes utilisation figures from the disks. */
export function scanSr(pool: LabPool, sr: string): void {
  const record = pool.store.record("SR", sr);
  let physical = 0;
  let virtual = 0;
  for (const vdi of record.VDIs as string[]) {
    if (!pool.store.has("VDI", vdi)) continue;
    refreshUtilisation(pool, vdi);
    const vdiRecord = pool.store.record("VDI", vdi);
    physical += Number(vdiRecord.physical_utilisation);
    virtual += Number(vdiRecord.virtual_size);
  }
  pool.store.update("SR", sr, (target) => {
    target.physical_utilisation = physical;
    target.virtual_allocation = virtual;
  });
}
