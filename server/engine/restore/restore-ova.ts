/**
 * The ova.xml of a delta restore point, built from the VM records its metadata stores (`vmSnapshot`, `vbds`, `vdis`,
 * `vifs`): the records of the snapshot as XAPI gave them, with their OpaqueRefs rewritten to export-local ids (`Ref:N`)
 * as XAPI's own export does, refs that point outside the export set to `OpaqueRef:NULL` (and dropped from sets), a stand-in
 * SR for the disks (XAPI's import needs each disk's SR in ova.xml), and the VM made a plain halted VM again (not a snapshot, not a template, no backup other_config keys).
 */
import { randomUUID } from "node:crypto";
import type { OvaDocument, OvaObject } from "../../formats/xva/index.js";
import type { BackupMetadata } from "../../repository/metadata.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";

const NULL_REF = "OpaqueRef:NULL";

/** other_config keys of a backup snapshot that must not follow the restored VM (it would look like a backup snapshot). */
const SNAPSHOT_ONLY_KEYS = new Set<string>(Object.values(OtherConfigKey));

export interface OvaFromMetadata {
  ova: OvaDocument;
  /** Metadata VDI ref (the key of `vhds`) -> its id in ova.xml. */
  vdiIds: Map<string, string>;
}

/**
 * @param virtualSizes per metadata VDI ref, the size of its VHD chain (ova.xml must declare exactly that size)
 * @throws Error when the metadata has no VBD for one of the disks to restore
 */
export function ovaFromMetadata(metadata: BackupMetadata, virtualSizes: Map<string, number>): OvaFromMetadata {
  const vbds = Object.entries(metadata.vbds ?? {});
  const vdis = Object.entries(metadata.vdis ?? {}).filter(([ref]) => virtualSizes.has(ref));
  const vifs = Object.entries(metadata.vifs ?? {});
  let next = 0;
  const ids = new Map<string, string>();
  const vmId = `Ref:${next++}`;
  // The snapshot's own ref is not in its record: every VBD and VIF names it.
  for (const [, record] of [...vbds, ...vifs]) if (typeof record.VM === "string") ids.set(record.VM, vmId);
  for (const [ref] of [...vbds, ...vdis, ...vifs]) ids.set(ref, `Ref:${next++}`);
  // XAPI's import looks up the SR of every disk it streams in ova.xml (import.ml `non_cdrom_vdis`: else
  // IMPORT_ERROR_FAILED_TO_FIND_OBJECT), then places the disk on the import's SR: one stand-in SR, as XAPI's export has one.
  const srId = `Ref:${next++}`;
  for (const [ref] of vdis) {
    if (!vbds.some(([, vbd]) => vbd.VDI === ref))
      throw new Error(`the metadata has no VBD for the disk ${ref}: the VM cannot be rebuilt from it`);
  }

  const vm = rewriteRefs(structuredClone(metadata.vmSnapshot), ids) as Record<string, unknown>;
  const otherConfig = Object.fromEntries(
    Object.entries((vm.other_config as Record<string, string> | undefined) ?? {}).filter(([key]) => !SNAPSHOT_ONLY_KEYS.has(key)),
  );
  Object.assign(vm, {
    is_a_snapshot: false,
    is_a_template: false,
    snapshot_of: NULL_REF,
    snapshots: [],
    parent: NULL_REF,
    power_state: "Halted",
    resident_on: NULL_REF,
    allowed_operations: [],
    current_operations: {},
    other_config: otherConfig,
    VBDs: vbds.map(([ref]) => ids.get(ref)),
    VIFs: vifs.map(([ref]) => ids.get(ref)),
  });
  const objects: OvaObject[] = [{ class: "VM", id: vmId, snapshot: vm }];
  for (const [ref, record] of vbds) {
    const snapshot = rewriteRefs(structuredClone(record), ids) as Record<string, unknown>;
    Object.assign(snapshot, { VM: vmId, currently_attached: false, allowed_operations: [], current_operations: {} });
    objects.push({ class: "VBD", id: ids.get(ref)!, snapshot });
  }
  for (const [ref, record] of vdis) {
    const snapshot = rewriteRefs(structuredClone(record), ids) as Record<string, unknown>;
    Object.assign(snapshot, {
      SR: srId,
      virtual_size: virtualSizes.get(ref),
      is_a_snapshot: false,
      snapshot_of: NULL_REF,
      snapshots: [],
      allowed_operations: [],
      current_operations: {},
    });
    objects.push({ class: "VDI", id: ids.get(ref)!, snapshot });
  }
  for (const [ref, record] of vifs) {
    const snapshot = rewriteRefs(structuredClone(record), ids) as Record<string, unknown>;
    Object.assign(snapshot, { VM: vmId, currently_attached: false, allowed_operations: [], current_operations: {} });
    objects.push({ class: "VIF", id: ids.get(ref)!, snapshot });
  }
  objects.push({ class: "SR", id: srId, snapshot: standInSr(vdis.map(([ref]) => ids.get(ref)!)) });
  const vdiIds = new Map(vdis.map(([ref]) => [ref, ids.get(ref)!]));
  const ova: OvaDocument = {
    version: {
      hostname: "cairn",
      date: new Date().toISOString().slice(0, 10),
      product_version: "8.3.0",
      product_brand: "Cairn",
      build_number: "restore",
      xapi_major: 1,
      xapi_minor: 1,
      export_vsn: 2,
    },
    objects,
  };
  return { ova, vdiIds };
}

/** An SR record with the datamodel's fields (XAPI reads it with `API.sR_t_of_rpc`); a full import uses the import's SR instead. */
function standInSr(vdiIds: string[]): Record<string, unknown> {
  return {
    uuid: randomUUID(),
    name_label: "Cairn restore",
    name_description: "the SR of the restored disks (the import places them on its own SR)",
    allowed_operations: [],
    current_operations: {},
    VDIs: vdiIds,
    PBDs: [],
    virtual_allocation: 0,
    physical_utilisation: 0,
    physical_size: 0,
    type: "ext",
    content_type: "user",
    shared: false,
    other_config: {},
    tags: [],
    sm_config: {},
    blobs: {},
    local_cache_enabled: false,
    introduced_by: NULL_REF,
    clustered: false,
    is_tools_sr: false,
  };
}

/** Known refs -> ids; other refs -> OpaqueRef:NULL (dropped from sets); map keys that are refs are rewritten too. */
function rewriteRefs(value: unknown, ids: Map<string, string>): unknown {
  if (typeof value === "string") return value.startsWith("OpaqueRef:") ? (ids.get(value) ?? NULL_REF) : value;
  if (Array.isArray(value)) {
    return value
      .filter((item) => typeof item !== "string" || !item.startsWith("OpaqueRef:") || ids.has(item))
      .map((item) => rewriteRefs(item, ids));
  }
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key]) => !key.startsWith("OpaqueRef:") || ids.has(key))
        .map(([key, item]) => [ids.get(key) ?? key, rewriteRefs(item, ids)]),
    );
  }
  return value;
}
