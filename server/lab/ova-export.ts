import type { OvaDocument, OvaObject, XvaDiskSource } from "../formats/xva/index.js";
import type { XapiClass } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";
import { NULL_REF, xapiDate } from "./xapi-values.js";

function rewriteRefs(value: unknown, ids: Map<string, string>): unknown {
  if (typeof value === "string") return value.startsWith("OpaqueRef:") ? (ids.get(value) ?? NULL_REF) : value;
  if (Array.isArray(value)) {
    // Sets drop the refs that point outside the export (e.g. a VDI's VBDs of other VMs).
    return value
      .filter((item) => typeof item !== "string" || !item.startsWith("OpaqueRef:") || ids.has(item))
      .map((item) => rewriteRefs(item, ids));
  }
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [ids.get(key) ?? key, rewriteRefs(item, ids)]));
  }
  return value;
}

let nextOvaId = 1;

/**
 * The ova.xml document and disk sources of a VM export (`export.ml`): the VM (Halted, not a snapshot), its
 * VBDs, the VDIs of its non-CD disks and their SRs, its VIFs and their networks; refs rewritten to
 * `Ref:<n>` ids, refs outside the export to `OpaqueRef:NULL`. Only disks not on an ISO SR are streamed.
 */
export function buildVmExport(pool: LabPool, vm: string): { ova: OvaDocument; disks: XvaDiskSource[] } {
  const { store } = pool;
  const members: Array<[XapiClass, string]> = [["VM", vm]];
  const vmRecord = store.record("VM", vm);
  const streamed: string[] = [];
  for (const vbd of vmRecord.VBDs as string[]) {
    if (!store.has("VBD", vbd)) continue;
    members.push(["VBD", vbd]);
    const vbdRecord = store.record("VBD", vbd);
    const vdi = vbdRecord.VDI as string;
    if (vdi === NULL_REF || !store.has("VDI", vdi)) continue;
    const sr = store.record("VDI", vdi).SR as string;
    if (vbdRecord.type === "CD" || store.record("SR", sr).content_type === "iso") continue;
    members.push(["VDI", vdi]);
    streamed.push(vdi);
    if (!members.some(([, ref]) => ref === sr)) members.push(["SR", sr]);
  }
  for (const vif of vmRecord.VIFs as string[]) {
    if (!store.has("VIF", vif)) continue;
    members.push(["VIF", vif]);
    const network = store.record("VIF", vif).network as string;
    if (store.has("network", network) && !members.some(([, ref]) => ref === network)) members.push(["network", network]);
  }
  const ids = new Map(members.map(([, ref]) => [ref, `Ref:${nextOvaId++}`]));
  const objects: OvaObject[] = members.map(([cls, ref]) => {
    const snapshot = rewriteRefs(structuredClone(store.record(cls, ref)), ids) as Record<string, unknown>;
    snapshot.allowed_operations = [];
    snapshot.current_operations = {};
    if (cls === "VM")
      Object.assign(snapshot, {
        power_state: "Halted",
        is_a_snapshot: false,
        snapshot_of: NULL_REF,
        snapshots: [],
        parent: NULL_REF,
        resident_on: NULL_REF,
      });
    if (cls === "VBD") snapshot.currently_attached = false;
    if (cls === "SR") snapshot.PBDs = [];
    if (cls === "network") snapshot.PIFs = [];
    return { class: cls, id: ids.get(ref) as string, snapshot };
  });
  const hostRecord = store.record("host", pool.hostRef);
  const ova: OvaDocument = {
    version: {
      hostname: String(hostRecord.hostname),
      date: xapiDate().slice(0, 8),
      product_version: "8.3.0",
      product_brand: "XCP-ng",
      build_number: "lab",
      xapi_major: 24,
      xapi_minor: 19,
      export_vsn: 2,
    },
    objects,
  };
  const disks: XvaDiskSource[] = streamed.map((vdi) => {
    const location = store.record("VDI", vdi).location as string;
    return {
      ref: ids.get(vdi) as string,
      virtualSize: pool.disks.virtualSize(location),
      read: (offset, length) => pool.disks.read(location, offset, length),
      isZero: (offset, length) => pool.disks.isHole(location, offset, length),
    };
  });
  return { ova, disks };
}
