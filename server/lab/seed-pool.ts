import { join } from "node:path";
import type { XapiRecord } from "./class-defaults.js";
import { DISK_BLOCK_SIZE } from "./disk-store.js";
import { ext4MbrImage, fatGptImage, importImage } from "./disk-images.js";
import type { LabPool } from "./pool-state.js";
import { seededBytes, SeededRandom } from "./seeded-random.js";
import { addVdiRecord, createVbd } from "./vdi-operations.js";
import { setPowerState, type PowerState } from "./vm-operations.js";
import { newUuid } from "./xapi-values.js";

export interface SeedOptions {
  name: string;
  hostAddress: string;
  seed: string;
  diskSizeBytes: number;
}

/** At most this many 2 MiB blocks of the random data disk are written, whatever its virtual size. */
const RANDOM_DISK_MAX_BLOCKS = 32;

function macFor(random: SeededRandom): string {
  const bytes = [0x02, ...Array.from({ length: 5 }, () => random.below(256))];
  return bytes.map((byte) => byte.toString(16).padStart(2, "0")).join(":");
}

/**
 * Fills an empty pool: one host (with its control domain), a default local SR, a second SR, an ISO SR,
 * a network, and VMs in several power states with tags and real disk content (see README.md).
 */
export async function seedPool(pool: LabPool, options: SeedOptions, log: (message: string) => void): Promise<void> {
  const { store } = pool;
  const random = new SeededRandom(options.seed);
  const poolRef = store.create("pool", { name_label: options.name, name_description: "Cairn lab pool" });
  const host = store.create("host", {
    name_label: `${options.name}-host`,
    hostname: `${options.name}-host`,
    address: options.hostAddress,
    software_version: { product_version: "8.3.0", product_brand: "XCP-ng", platform_name: "XCP", xapi: "24.19", xen: "4.17.5" },
  });
  const dom0 = store.create("VM", {
    name_label: `Control domain on host: ${options.name}-host`,
    is_control_domain: true,
    power_state: "Running",
    resident_on: host,
    domid: 0,
    is_a_template: false,
  });
  store.update("host", host, (record) => {
    record.control_domain = dom0;
    record.resident_VMs = [dom0];
  });

  const sr = (name: string, fields: XapiRecord) => {
    const ref = store.create("SR", { name_label: name, physical_size: 2 ** 41, ...fields });
    const pbd = store.create("PBD", {
      host,
      SR: ref,
      device_config: { location: `/var/run/sr-mount/${String(store.record("SR", ref).uuid)}` },
    });
    store.update("SR", ref, (record) => void (record.PBDs = [pbd]));
    store.addToSet("host", host, "PBDs", pbd);
    return ref;
  };
  const localSr = sr("Local storage", { type: "ext", name_description: "default SR" });
  const secondSr = sr("Second storage", { type: "ext" });
  const isoSr = sr("ISO library", { type: "iso", content_type: "iso", shared: true });
  store.update("pool", poolRef, (record) => {
    record.master = host;
    record.default_SR = localSr;
    record.suspend_image_SR = localSr;
    record.crash_dump_SR = localSr;
  });
  const network = store.create("network", { name_label: "Pool-wide network associated with eth0", bridge: "xenbr0" });

  const size = options.diskSizeBytes;
  const cacheDir = join(pool.options.dir, "..", "image-cache");
  const disk = async (name: string, srRef: string, fill: (location: string) => Promise<void>, fields: XapiRecord = {}) => {
    const location = newUuid();
    const virtualSize = (fields.virtual_size as number | undefined) ?? size;
    await pool.disks.create(location, virtualSize);
    await fill(location);
    return addVdiRecord(pool, { name_label: name, SR: srRef, location, virtual_size: virtualSize, ...fields });
  };
  const fromImage = (kind: string, build: () => Promise<string>) => async (location: string) => {
    try {
      await importImage(pool.disks, location, await build());
    } catch (error) {
      log(`lab: WARNING: could not build the ${kind} disk (${(error as Error).message}); using a plain data disk instead`);
      await writeRandom(location, kind);
    }
  };
  const writeRandom = async (location: string, label: string) => {
    const blockCount = Math.ceil(size / DISK_BLOCK_SIZE);
    const count = Math.min(blockCount, RANDOM_DISK_MAX_BLOCKS);
    const step = Math.max(1, Math.floor(blockCount / count));
    for (let i = 0; i < count; i++) {
      const index = i * step;
      const length = Math.min(DISK_BLOCK_SIZE, size - index * DISK_BLOCK_SIZE);
      await pool.disks.write(location, index * DISK_BLOCK_SIZE, seededBytes(options.seed, `${label}:${index}`, length));
    }
  };

  const ext4Vdi = await disk(
    "web-ext4 root (MBR, ext4)",
    localSr,
    fromImage("ext4", () => ext4MbrImage(cacheDir, size, options.seed)),
  );
  const fatVdi = await disk(
    "win-fat system (GPT, FAT)",
    localSr,
    fromImage("fat", () => fatGptImage(cacheDir, size, options.seed)),
  );
  const dataVdi = await disk("db-data data (random)", secondSr, (location) => writeRandom(location, "data"));
  const scratchVdi = await disk("scratch (empty)", localSr, async () => {});
  const isoVdi = await disk("guest-tools.iso", isoSr, async () => {}, {
    virtual_size: 4 * 1024 * 1024,
    read_only: true,
    is_tools_iso: true,
    type: "user",
  });

  const vm = (name: string, power: PowerState, tags: string[], disks: string[], withCd = false) => {
    const ref = store.create("VM", {
      name_label: name,
      name_description: `lab VM ${name}`,
      tags,
      power_state: "Halted",
      other_config: { mac_seed: newUuid() },
      memory_static_max: 2 ** 30,
      VCPUs_max: 2,
      VCPUs_at_startup: 2,
    });
    disks.forEach((vdi, index) =>
      createVbd(pool, {
        VM: ref,
        VDI: vdi,
        userdevice: String(index),
        device: `xvd${"abcdefgh"[index]}`,
        bootable: index === 0,
        type: "Disk",
        mode: "RW",
      }),
    );
    if (withCd) createVbd(pool, { VM: ref, VDI: isoVdi, userdevice: "3", device: "xvdd", type: "CD", mode: "RO" });
    const vif = store.create("VIF", { VM: ref, network, device: "0", MAC: macFor(random) });
    store.update("VM", ref, (record) => void (record.VIFs = [vif]));
    store.addToSet("network", network, "VIFs", vif);
    if (power !== "Halted") setPowerState(pool, ref, power);
    return ref;
  };
  vm("web-ext4", "Running", ["prod", "web"], [ext4Vdi], true);
  vm("win-fat", "Halted", ["test", "windows"], [fatVdi]);
  vm("db-data", "Paused", ["prod", "db"], [dataVdi]);
  vm("scratch", "Suspended", ["cairn:no-bak"], [scratchVdi]);
  store.create("VM", {
    name_label: "Debian Bookworm 12",
    is_a_template: true,
    is_default_template: true,
    other_config: { default_template: "true" },
  });
}

export interface MemberHostOptions {
  /** The member's `host.address` (where its own HTTP server listens). */
  address: string;
  seed: string;
  diskSizeBytes: number;
}

/**
 * Makes the pool a two-host pool (idempotent: a saved pool keeps its member, whose address is updated): a second host
 * `<pool>-host-2` with its control domain, its own local SR `Local storage (host 2)` (a PBD on that host only, so only the
 * member sees it), a PBD of every shared SR on it too, and a Halted VM `member-vm` whose disk is on the member's SR. The
 * master's local SRs get no PBD on the member. XAPI then serves transfers of that SR only from the member
 * (importexport.ml `check_sr_availability`) and answers 302 to the member's address elsewhere. @returns the member's ref.
 */
export async function addMemberHost(pool: LabPool, options: MemberHostOptions): Promise<string> {
  const { store } = pool;
  const poolName = String(store.record("pool", pool.poolRef).name_label);
  const name = `${poolName}-host-2`;
  const existing = store.all("host").find((object) => object.record.name_label === name);
  if (existing !== undefined) {
    if (existing.record.address !== options.address)
      store.update("host", existing.ref, (record) => void (record.address = options.address));
    return existing.ref;
  }
  const master = store.record("host", pool.hostRef);
  const host = store.create("host", {
    name_label: name,
    hostname: name,
    address: options.address,
    software_version: master.software_version,
    API_version_major: master.API_version_major,
    API_version_minor: master.API_version_minor,
  });
  const dom0 = store.create("VM", {
    name_label: `Control domain on host: ${name}`,
    is_control_domain: true,
    power_state: "Running",
    resident_on: host,
    domid: 0,
    is_a_template: false,
  });
  store.update("host", host, (record) => {
    record.control_domain = dom0;
    record.resident_VMs = [dom0];
  });
  const plug = (sr: string) => {
    const pbd = store.create("PBD", {
      host,
      SR: sr,
      device_config: { location: `/var/run/sr-mount/${String(store.record("SR", sr).uuid)}` },
    });
    store.addToSet("SR", sr, "PBDs", pbd);
    store.addToSet("host", host, "PBDs", pbd);
  };
  for (const shared of store.all("SR").filter((object) => object.record.shared === true)) plug(shared.ref);
  const localSr = store.create("SR", { name_label: "Local storage (host 2)", type: "ext", physical_size: 2 ** 41, PBDs: [] });
  plug(localSr);

  const location = newUuid();
  const size = options.diskSizeBytes;
  await pool.disks.create(location, size);
  const blocks = Math.min(Math.ceil(size / DISK_BLOCK_SIZE), 4);
  for (let index = 0; index < blocks; index++) {
    const length = Math.min(DISK_BLOCK_SIZE, size - index * DISK_BLOCK_SIZE);
    await pool.disks.write(location, index * DISK_BLOCK_SIZE, seededBytes(options.seed, `member:${index}`, length));
  }
  const vdi = addVdiRecord(pool, { name_label: "member-vm data", SR: localSr, location, virtual_size: size });
  const vm = store.create("VM", {
    name_label: "member-vm",
    name_description: "lab VM on the pool's second host",
    tags: ["member"],
    power_state: "Halted",
    affinity: host,
    other_config: { mac_seed: newUuid() },
    memory_static_max: 2 ** 30,
    VCPUs_max: 1,
    VCPUs_at_startup: 1,
  });
  createVbd(pool, { VM: vm, VDI: vdi, userdevice: "0", device: "xvda", bootable: true, type: "Disk", mode: "RW" });
  return host;
}
