/**
 * What XAPI keeps true of its database besides the operations themselves, kept true of the lab's: every VM has its
 * VM_metrics (and a running guest its VM_guest_metrics), the host its host_metrics and a PIF on each network, each SR
 * type its SM object, and `allowed_operations` of VMs, VDIs, SRs, VBDs, VIFs and the host follow their state (XAPI's
 * `update_allowed_operations` after each operation). Runs after each batch of changes (a microtask later, as XAPI's own
 * updates are separate database writes: a client may see a `mod` event before the one that updates allowed_operations).
 */
import { createHash } from "node:crypto";
import type { XapiRecord } from "./class-defaults.js";
import {
  hostAllowedOperations,
  smFeatures,
  srAllowedOperations,
  vbdAllowedOperations,
  vdiAllowedOperations,
  vifAllowedOperations,
  vmAllowedOperations,
} from "./datamodel-operations.js";
import type { LabPool } from "./pool-state.js";
import { NULL_REF, xapiDate } from "./xapi-values.js";

const HOST_MEMORY = 64 * 2 ** 30;

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function setIfChanged(pool: LabPool, cls: string, ref: string, field: string, value: unknown): void {
  if (!pool.store.has(cls, ref) || same(pool.store.record(cls, ref)[field], value)) return;
  pool.store.update(cls, ref, (record) => {
    record[field] = value;
  });
}

/** A stable MAC for a PIF, from its network's uuid. */
function macOf(seed: string): string {
  const bytes = createHash("sha256").update(seed).digest();
  return ["02", ...[...bytes.subarray(0, 5)].map((byte) => byte.toString(16).padStart(2, "0"))].join(":");
}

class Upkeep {
  private seen = 0;
  private scheduled = false;
  /** VM -> its metrics objects, to destroy them with the VM. */
  private readonly metricsOf = new Map<string, string[]>();

  constructor(private readonly pool: LabPool) {}

  start(): void {
    this.pass(true);
    this.pool.store.on("change", () => {
      if (this.scheduled) return;
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.pass(false);
      });
    });
  }

  private pass(everything: boolean): void {
    const { store } = this.pool;
    if (store.all("pool").length === 0) return;
    const { live, deleted } = store.changesSince(everything ? -1 : this.seen);
    this.seen = store.generation;
    for (const tomb of deleted) {
      if (tomb.cls !== "VM") continue;
      for (const ref of this.metricsOf.get(tomb.ref) ?? []) {
        for (const cls of ["VM_metrics", "VM_guest_metrics"]) if (store.has(cls, ref)) store.destroy(cls, ref);
      }
      this.metricsOf.delete(tomb.ref);
    }
    const vms = new Set<string>();
    const vdis = new Set<string>();
    const srs = new Set<string>();
    const vbds = new Set<string>();
    const vifs = new Set<string>();
    let host = everything;
    for (const object of live) {
      switch (object.cls) {
        case "VM":
          vms.add(object.ref);
          for (const vbd of object.record.VBDs as string[]) vbds.add(vbd);
          for (const vif of object.record.VIFs as string[]) vifs.add(vif);
          break;
        case "VDI":
          vdis.add(object.ref);
          srs.add(object.record.SR as string);
          break;
        case "VBD":
          vbds.add(object.ref);
          vdis.add(object.record.VDI as string);
          break;
        case "VIF":
          vifs.add(object.ref);
          break;
        case "SR":
          srs.add(object.ref);
          break;
        case "PBD":
          srs.add(object.record.SR as string);
          break;
        case "host":
        case "network":
          host = true;
          break;
      }
    }
    if (host) this.keepHost();
    for (const vm of vms) this.keepVm(vm);
    for (const vbd of vbds)
      if (store.has("VBD", vbd)) setIfChanged(this.pool, "VBD", vbd, "allowed_operations", vbdAllowedOperations(this.pool, vbd));
    for (const vif of vifs)
      if (store.has("VIF", vif)) setIfChanged(this.pool, "VIF", vif, "allowed_operations", vifAllowedOperations(this.pool, vif));
    for (const vdi of vdis)
      if (store.has("VDI", vdi)) setIfChanged(this.pool, "VDI", vdi, "allowed_operations", vdiAllowedOperations(this.pool, vdi));
    for (const sr of srs) if (store.has("SR", sr)) this.keepSr(sr);
    this.seen = store.generation;
  }

  private keepVm(ref: string): void {
    const { store } = this.pool;
    if (!store.has("VM", ref)) return;
    const vm = store.record("VM", ref);
    const running = vm.power_state === "Running" || vm.power_state === "Paused";
    let metrics = vm.metrics as string;
    if (!store.has("VM_metrics", metrics)) {
      metrics = store.create("VM_metrics", { install_time: xapiDate(), last_updated: xapiDate() });
      setIfChanged(this.pool, "VM", ref, "metrics", metrics);
    }
    const metricsRecord = store.record("VM_metrics", metrics);
    const wanted: XapiRecord = {
      memory_actual: running ? vm.memory_dynamic_max : 0,
      VCPUs_number: running ? vm.VCPUs_at_startup : 0,
      VCPUs_utilisation: running ? Object.fromEntries(Array.from({ length: Number(vm.VCPUs_at_startup) }, (_, i) => [String(i), 0])) : {},
      current_domain_type: running ? vm.domain_type : "unspecified",
      hvm: vm.domain_type === "hvm",
      state: running ? (vm.power_state === "Paused" ? ["paused"] : ["running"]) : [],
    };
    if (Object.entries(wanted).some(([field, value]) => !same(metricsRecord[field], value))) {
      const started = running && metricsRecord.current_domain_type === "unspecified";
      store.update("VM_metrics", metrics, (record) => {
        Object.assign(record, wanted);
        record.last_updated = xapiDate();
        if (started) record.start_time = xapiDate();
      });
    }
    let guest = vm.guest_metrics as string;
    if (vm.power_state === "Running" && vm.is_control_domain !== true && !store.has("VM_guest_metrics", guest)) {
      guest = store.create("VM_guest_metrics", this.guestMetrics(vm));
      setIfChanged(this.pool, "VM", ref, "guest_metrics", guest);
    } else if (vm.power_state === "Halted" && guest !== NULL_REF) {
      if (store.has("VM_guest_metrics", guest)) store.destroy("VM_guest_metrics", guest);
      setIfChanged(this.pool, "VM", ref, "guest_metrics", NULL_REF);
      guest = NULL_REF;
    }
    this.metricsOf.set(
      ref,
      [metrics, guest].filter((r) => r !== NULL_REF),
    );
    setIfChanged(this.pool, "VM", ref, "allowed_operations", vmAllowedOperations(this.pool, ref));
  }

  private guestMetrics(vm: XapiRecord): XapiRecord {
    const vifs = (vm.VIFs as string[]).filter((vif) => this.pool.store.has("VIF", vif));
    return {
      os_version: { name: "Debian GNU/Linux 12 (bookworm)", distro: "debian", major: "12", minor: "0", uname: "6.1.0-18-amd64" },
      PV_drivers_version: { major: "8", minor: "4", micro: "0", build: "1" },
      networks: Object.fromEntries(vifs.map((vif, i) => [`${String(this.pool.store.record("VIF", vif).device)}/ip`, `10.0.0.${10 + i}`])),
      other: { "feature-shutdown": "1", "feature-suspend": "1", "feature-poweroff": "1", "feature-reboot": "1", has_vendor_device: "0" },
      memory: {},
      disks: {},
      last_updated: xapiDate(),
      can_use_hotplug_vbd: "yes",
      can_use_hotplug_vif: "yes",
    };
  }

  private keepSr(ref: string): void {
    const { store } = this.pool;
    const type = String(store.record("SR", ref).type);
    if (!store.all("SM").some((sm) => sm.record.type === type)) {
      const features = smFeatures(type);
      store.create("SM", {
        name_label: type === "iso" ? "ISO" : "Local EXT3 VHD",
        name_description:
          type === "iso"
            ? "Handles CD images stored as files in iso format"
            : "SR plugin which represents disks as VHD files stored on a local EXT3 filesystem, created inside an LVM volume",
        type,
        vendor: "Citrix Systems Inc",
        copyright: "(C) 2008 Citrix Systems Inc",
        version: "1.0",
        required_api_version: "1.0",
        capabilities: features,
        features: Object.fromEntries(features.map((feature) => [feature, 1])),
        driver_filename: `/opt/xensource/sm/${type === "iso" ? "ISOSR" : "EXTSR"}`,
        supported_image_formats: type === "iso" ? [] : ["vhd"],
      });
    }
    setIfChanged(this.pool, "SR", ref, "allowed_operations", srAllowedOperations(this.pool, ref));
  }

  /** Every host: its host_metrics, a PIF on each network (eth<i>, the first the management one), its allowed_operations. */
  private keepHost(): void {
    const { store } = this.pool;
    for (const { ref: host, record } of store.all("host")) {
      if (!store.has("host_metrics", record.metrics)) {
        const metrics = store.create("host_metrics", {
          memory_total: HOST_MEMORY,
          memory_free: HOST_MEMORY / 2,
          live: true,
          last_updated: xapiDate(),
        });
        setIfChanged(this.pool, "host", host, "metrics", metrics);
      }
      store.all("network").forEach((network, index) => {
        const pifs = (network.record.PIFs as string[]).filter((pif) => store.has("PIF", pif));
        if (pifs.some((pif) => store.record("PIF", pif).host === host)) return;
        const metrics = store.create("PIF_metrics", {
          carrier: true,
          speed: 1000,
          duplex: true,
          vendor_name: "Intel Corporation",
          device_name: "82540EM Gigabit Ethernet Controller",
          last_updated: xapiDate(),
        });
        const pif = store.create("PIF", {
          device: `eth${index}`,
          network: network.ref,
          host,
          MAC: macOf(`${String(network.record.uuid)}/${String(record.uuid)}`),
          metrics,
          management: index === 0,
          IP: index === 0 ? String(record.address) : "",
          netmask: index === 0 ? "255.255.255.0" : "",
          ip_configuration_mode: index === 0 ? "Static" : "None",
        });
        store.addToSet("network", network.ref, "PIFs", pif);
        store.addToSet("host", host, "PIFs", pif);
      });
      setIfChanged(this.pool, "host", host, "allowed_operations", hostAllowedOperations(store.record("host", host)));
    }
  }
}

/** Keeps the pool's database as XAPI keeps its own (see the file's comment), from now on; fixes what is off at once. */
export function keepDatamodelInvariants(pool: LabPool): void {
  new Upkeep(pool).start();
}
