import type { LabOva } from "./lab-xva-reader.js";
import type { XapiRecord } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";
import { addVdiRecord, createVbd, destroyVdi } from "./vdi-operations.js";
import { destroyVm } from "./vm-operations.js";
import { XapiFailure } from "./xapi-failure.js";
import { newUuid, NULL_REF } from "./xapi-values.js";

/** What an XVA import created: the VM refs and, per ova.xml VDI id, the new VDI and its disk. */
export interface ImportedObjects {
  vms: string[];
  /** Every VM created, snapshots included. */
  allVms: string[];
  disks: Map<string, { vdi: string; location: string }>;
}

function objectsOf(ova: LabOva, cls: string) {
  return ova.objects.filter((object) => object.class === cls);
}

/**
 * Creates the objects of an imported ova.xml (`import.ml`): new VDIs on `sr` (sizes from ova.xml, new
 * uuids), new Halted VMs with new uuids and `mac_seed`, their VBDs and VIFs (VIFs on the network of the
 * same name, else the pool's first). Each VM carries `{task: "import"}` in `current_operations` until
 * {@link finishImport}.
 */
export async function createImportedObjects(pool: LabPool, ova: LabOva, sr: string, task: string): Promise<ImportedObjects> {
  const { store } = pool;
  const major = Number(ova.version.xapi_major ?? 0);
  if (major > 24) throw new XapiFailure("IMPORT_INCOMPATIBLE_VERSION", []);
  const result: ImportedObjects = { vms: [], allVms: [], disks: new Map() };
  for (const object of objectsOf(ova, "VDI")) {
    const size = Number(object.snapshot.virtual_size);
    if (!Number.isSafeInteger(size) || size < 0) throw new XapiFailure("IMPORT_ERROR", [`VDI ${object.id} has no valid virtual_size`]);
    const location = newUuid();
    await pool.disks.create(location, size);
    const fields = { ...object.snapshot } as XapiRecord;
    for (const drop of [
      "uuid",
      "VBDs",
      "snapshots",
      "snapshot_of",
      "SR",
      "location",
      "parent",
      "crash_dumps",
      "current_operations",
      "allowed_operations",
    ])
      delete fields[drop];
    const vdi = addVdiRecord(pool, { ...fields, is_a_snapshot: false, SR: sr, location, virtual_size: size });
    result.disks.set(object.id, { vdi, location });
  }
  const networks = store.all("network");
  const vmIds = new Map<string, string>();
  const vmObjects = objectsOf(ova, "VM");
  const nonSnapshots = vmObjects.filter((object) => object.snapshot.is_a_snapshot !== true);
  for (const object of vmObjects) {
    const fields = { ...object.snapshot } as XapiRecord;
    for (const drop of [
      "uuid",
      "VBDs",
      "VIFs",
      "snapshots",
      "snapshot_of",
      "parent",
      "children",
      "resident_on",
      "affinity",
      "suspend_VDI",
      "suspend_SR",
      "metrics",
      "guest_metrics",
      "consoles",
    ])
      delete fields[drop];
    const vm = store.create("VM", {
      ...fields,
      power_state: "Halted",
      version: 0,
      other_config: { ...((fields.other_config as Record<string, string> | undefined) ?? {}), mac_seed: newUuid() },
      current_operations: { [task]: "import" },
    });
    vmIds.set(object.id, vm);
    result.allVms.push(vm);
    if (nonSnapshots.length === 0 || object.snapshot.is_a_snapshot !== true) result.vms.push(vm);
  }
  for (const object of objectsOf(ova, "VBD")) {
    const vm = vmIds.get(String(object.snapshot.VM));
    if (vm === undefined) continue;
    const disk = result.disks.get(String(object.snapshot.VDI));
    const fields = { ...object.snapshot } as XapiRecord;
    delete fields.uuid;
    createVbd(pool, { ...fields, VM: vm, VDI: disk?.vdi ?? NULL_REF, currently_attached: false, empty: disk === undefined });
  }
  for (const object of objectsOf(ova, "VIF")) {
    const vm = vmIds.get(String(object.snapshot.VM));
    if (vm === undefined || networks.length === 0) continue;
    const ovaNetwork = ova.objects.find((candidate) => candidate.id === object.snapshot.network);
    const network = networks.find((candidate) => candidate.record.name_label === ovaNetwork?.snapshot.name_label) ?? networks[0];
    const fields = { ...object.snapshot } as XapiRecord;
    delete fields.uuid;
    const vif = store.create("VIF", { ...fields, VM: vm, network: network.ref, currently_attached: false });
    store.addToSet("VM", vm, "VIFs", vif);
    store.addToSet("network", network.ref, "VIFs", vif);
  }
  store.update("task", task, (record) => {
    record.other_config = { ...(record.other_config as object), object_creation: "complete" };
  });
  return result;
}

/** Clears the import operation from the created VMs. */
export function finishImport(pool: LabPool, imported: ImportedObjects): void {
  for (const vm of imported.allVms) {
    if (pool.store.has("VM", vm)) pool.store.update("VM", vm, (record) => void (record.current_operations = {}));
  }
}

/** Removes what a failed import created (VMs with their VBDs and VIFs, and the VDIs). */
export async function undoImport(pool: LabPool, imported: ImportedObjects): Promise<void> {
  for (const vm of pool.store.all("VM").filter((object) => imported.allVms.includes(object.ref))) {
    pool.store.update("VM", vm.ref, (record) => void (record.current_operations = {}));
    destroyVm(pool, vm.ref);
  }
  for (const { vdi } of imported.disks.values()) if (pool.store.has("VDI", vdi)) await destroyVdi(pool, vdi);
}
