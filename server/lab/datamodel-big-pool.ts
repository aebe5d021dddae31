/**
 * Fills a seeded lab pool to the size of a big production pool (issue 13, behaviour 7): hundreds of VMs with disks,
 * snapshots, metrics and guest metrics, thousands of `message` records (XAPI keeps alerts for weeks), and objects of every
 * class a real pool lists, in the numbers a real host has them (XAPI's role table holds every permission as a role, a
 * host lists its CPUs, PCI devices and licensed features...). The disks are sparse and empty: a big pool costs
 * database size, not disk space.
 */
import { DATAMODEL, type XapiRecord } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";
import { SeededRandom } from "./seeded-random.js";
import { createVbd } from "./vdi-operations.js";
import { setPowerState } from "./vm-operations.js";
import { newUuid, NULL_REF, xapiDate } from "./xapi-values.js";

export interface BigPoolOptions {
  /** VMs to add (each with a disk and a VIF; a third run, a third have a snapshot). */
  vms: number;
  /** `message` records to add. */
  messages: number;
  /** Records of every other class a real pool lists: how many of each. @default 3 */
  perClass?: number;
  seed?: string;
}

// How many a real XCP-ng 8.3 host or pool has of these (the rest get `perClass`).
const REALISTIC: Record<string, number> = { role: 1200, Feature: 40, host_cpu: 32, PCI: 60, Certificate: 2, SM: 0, subject: 5 };

const MESSAGE_NAMES = [
  "VM_STARTED",
  "VM_SHUTDOWN",
  "VM_SNAPSHOTTED",
  "HOST_CLOCK_SKEW_DETECTED",
  "ALARM",
  "VM_REBOOTED",
  "VDI_CBT_RESIZE_FAILED",
];

/** Adds the objects of a big pool to `pool` (see the file's comment); resolves when their disks exist. */
export async function fillBigPool(pool: LabPool, options: BigPoolOptions): Promise<void> {
  const { store } = pool;
  const random = new SeededRandom(options.seed ?? "big-pool");
  const sr = pool.defaultSr;
  const network = store.all("network")[0]?.ref ?? NULL_REF;
  const disks: Promise<void>[] = [];
  const vmUuids: string[] = [];
  for (let i = 0; i < options.vms; i++) {
    const name = `big-${String(i).padStart(4, "0")}`;
    const vm = store.create("VM", {
      name_label: name,
      name_description: `big pool VM ${i}`,
      tags: i % 5 === 0 ? ["prod"] : ["test"],
      other_config: { mac_seed: newUuid() },
      VCPUs_max: 2,
      VCPUs_at_startup: 2,
    });
    vmUuids.push(String(store.record("VM", vm).uuid));
    const location = newUuid();
    disks.push(pool.disks.create(location, 20 * 2 ** 30));
    // The disk store queues its changes: the record may name the disk before its creation has run.
    const vdi = store.create("VDI", { name_label: `${name} disk`, SR: sr, location, virtual_size: 20 * 2 ** 30 });
    store.addToSet("SR", sr, "VDIs", vdi);
    createVbd(pool, { VM: vm, VDI: vdi, userdevice: "0", device: "xvda", bootable: true, type: "Disk", mode: "RW" });
    if (network !== NULL_REF) {
      const mac = ["02", ...Array.from({ length: 5 }, () => random.below(256).toString(16).padStart(2, "0"))].join(":");
      const vif = store.create("VIF", { VM: vm, network, device: "0", MAC: mac });
      store.addToSet("VM", vm, "VIFs", vif);
      store.addToSet("network", network, "VIFs", vif);
    }
    if (i % 3 === 0) setPowerState(pool, vm, "Running");
    if (i % 3 === 1) {
      const snapshot = store.create("VM", {
        name_label: `${name} nightly`,
        is_a_snapshot: true,
        is_a_template: true,
        snapshot_of: vm,
        snapshot_time: xapiDate(),
        snapshot_info: { "disk-snapshot-type": "crash_consistent", "power-state-at-snapshot": "Halted" },
      });
      store.addToSet("VM", vm, "snapshots", snapshot);
      const snapshotDisk = newUuid();
      disks.push(pool.disks.share(location, snapshotDisk));
      const snapshotVdi = store.create("VDI", {
        name_label: `${name} disk`,
        SR: sr,
        location: snapshotDisk,
        virtual_size: 20 * 2 ** 30,
        is_a_snapshot: true,
        snapshot_of: vdi,
        snapshot_time: xapiDate(),
      });
      store.addToSet("SR", sr, "VDIs", snapshotVdi);
      store.addToSet("VDI", vdi, "snapshots", snapshotVdi);
      createVbd(pool, { VM: snapshot, VDI: snapshotVdi, userdevice: "0", device: "xvda", type: "Disk", mode: "RW" });
    }
  }
  const start = Date.now() - options.messages * 60_000;
  for (let i = 0; i < options.messages; i++) {
    const name = MESSAGE_NAMES[i % MESSAGE_NAMES.length];
    store.create("message", {
      name,
      priority: 1 + (i % 5),
      cls: "VM",
      obj_uuid: vmUuids.length > 0 ? vmUuids[i % vmUuids.length] : newUuid(),
      timestamp: xapiDate(new Date(start + i * 60_000)),
      body: `<body><message>${name.toLowerCase()} (${i}): the alert text of a real pool, with a few lines of detail about what happened and when</message></body>`,
    });
  }
  const host = pool.hostRef;
  for (const cls of DATAMODEL.exposed) {
    const wanted = REALISTIC[cls] ?? options.perClass ?? 3;
    const existing = store.count(cls);
    if (existing > 0 || ["message", "task"].includes(cls)) continue;
    for (let i = 0; i < wanted; i++) store.create(cls, classSample(cls, i, host));
  }
  await Promise.all(disks);
}

/** A plausible record of `cls` (its names filled, its host the pool's), the datamodel's defaults for the rest. */
function classSample(cls: string, index: number, host: string): XapiRecord {
  const fields = DATAMODEL.classes[cls].fields;
  const sample: XapiRecord = {};
  if ("name_label" in fields) sample.name_label = `${cls} ${index}`;
  if ("name_description" in fields) sample.name_description = `a ${cls} of the big lab pool`;
  if (cls === "role")
    Object.assign(sample, { name_label: `permission_${index}`, name_description: "a permission of XAPI's RBAC", is_internal: index > 6 });
  if ("host" in fields && fields.host === "host ref") sample.host = host;
  if (cls === "host_cpu")
    Object.assign(sample, { number: index, vendor: "GenuineIntel", modelname: "Intel(R) Xeon(R) Gold 6338", speed: 2000 });
  return sample;
}
