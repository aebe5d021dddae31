import { EPOCH_DATE, NULL_REF } from "./xapi-values.js";

/** The classes the lab serves, spelled as on the wire (events use the lower-cased name). */
export const XAPI_CLASSES = ["pool", "host", "SR", "PBD", "VM", "VBD", "VDI", "VIF", "network", "task", "message"] as const;
export type XapiClass = (typeof XAPI_CLASSES)[number];

export type XapiRecord = Record<string, unknown>;

export function isXapiClass(name: string): name is XapiClass {
  return (XAPI_CLASSES as readonly string[]).includes(name);
}

/** Case-insensitive lookup, as event class names are lower-cased. */
export function classByLowerName(name: string): XapiClass | undefined {
  return XAPI_CLASSES.find((cls) => cls.toLowerCase() === name.toLowerCase());
}

const common = (): XapiRecord => ({ uuid: "", other_config: {}, allowed_operations: [], current_operations: {} });

// The client builds its record class from the keys of the first record it sees (`_wrapRecord`), so every
// record of a class must carry exactly this field set: these factories are the one place defining it.
const defaults: Record<XapiClass, () => XapiRecord> = {
  pool: () => ({
    ...common(), name_label: "", name_description: "", master: NULL_REF, default_SR: NULL_REF, suspend_image_SR: NULL_REF,
    crash_dump_SR: NULL_REF, ha_enabled: false, tags: [], gui_config: {}, blobs: {}, wlb_enabled: false, restrictions: {},
    cpu_info: {}, migration_compression: false, coordinator_bias: true,
  }),
  host: () => ({
    ...common(), name_label: "", name_description: "", address: "", hostname: "", enabled: true, API_version_major: 2,
    API_version_minor: 21, API_version_vendor: "XenSource", software_version: {}, resident_VMs: [], PIFs: [], PBDs: [],
    control_domain: NULL_REF, tags: [], memory_overhead: 0, cpu_info: {}, capabilities: [], logging: {}, suspend_image_sr: NULL_REF,
    crash_dump_sr: NULL_REF, metrics: NULL_REF, bios_strings: {}, power_on_mode: "", license_params: {}, edition: "xcp-ng",
  }),
  SR: () => ({
    ...common(), name_label: "", name_description: "", type: "ext", content_type: "user", shared: false, physical_size: 0,
    physical_utilisation: 0, virtual_allocation: 0, VDIs: [], PBDs: [], sm_config: {}, tags: [], blobs: {},
    local_cache_enabled: false, introduced_by: NULL_REF, clustered: false, is_tools_sr: false,
  }),
  PBD: () => ({ ...common(), host: NULL_REF, SR: NULL_REF, device_config: {}, currently_attached: true }),
  VM: () => ({
    ...common(), name_label: "", name_description: "", power_state: "Halted", user_version: 1, is_a_template: false,
    is_default_template: false, is_control_domain: false, is_a_snapshot: false, snapshot_of: NULL_REF, snapshots: [],
    snapshot_time: EPOCH_DATE, snapshot_info: {}, snapshot_metadata: "", transportable_snapshot_id: "", parent: NULL_REF, children: [],
    suspend_VDI: NULL_REF, suspend_SR: NULL_REF, resident_on: NULL_REF, scheduled_to_be_resident_on: NULL_REF, affinity: NULL_REF,
    memory_overhead: 0, memory_target: 0, memory_static_max: 1073741824, memory_dynamic_max: 1073741824,
    memory_dynamic_min: 1073741824, memory_static_min: 134217728, VCPUs_params: {}, VCPUs_max: 1, VCPUs_at_startup: 1,
    actions_after_shutdown: "destroy", actions_after_reboot: "restart", actions_after_crash: "restart", consoles: [], VIFs: [],
    VBDs: [], VUSBs: [], crash_dumps: [], VTPMs: [], VGPUs: [], PCI_bus: "", PV_bootloader: "", PV_kernel: "", PV_ramdisk: "",
    PV_args: "", PV_bootloader_args: "", PV_legacy_args: "", HVM_boot_policy: "BIOS order", HVM_boot_params: { order: "cd" },
    HVM_shadow_multiplier: 1, platform: {}, domid: -1, domarch: "", last_boot_CPU_flags: {}, metrics: NULL_REF,
    guest_metrics: NULL_REF, last_booted_record: "", recommendations: "", xenstore_data: {}, ha_always_run: false,
    ha_restart_priority: "", is_snapshot_from_vmpp: false, snapshot_schedule: NULL_REF, is_vmss_snapshot: false, appliance: NULL_REF,
    start_delay: 0, shutdown_delay: 0, order: 0, blocked_operations: {}, bios_strings: {}, protection_policy: NULL_REF,
    version: 0, generation_id: "", hardware_platform_version: 0, has_vendor_device: false, requires_reboot: false,
    reference_label: "", domain_type: "hvm", NVRAM: {}, pending_guidances: [], tags: [],
  }),
  VBD: () => ({
    ...common(), VM: NULL_REF, VDI: NULL_REF, device: "", userdevice: "0", bootable: false, mode: "RW", type: "Disk",
    unpluggable: true, storage_lock: false, empty: false, currently_attached: false, status_code: 0, status_detail: "",
    runtime_properties: {}, qos_algorithm_type: "", qos_algorithm_params: {}, qos_supported_algorithms: [], metrics: NULL_REF,
  }),
  VDI: () => ({
    ...common(), name_label: "", name_description: "", SR: NULL_REF, VBDs: [], crash_dumps: [], virtual_size: 0,
    physical_utilisation: 0, type: "user", sharable: false, read_only: false, storage_lock: false, location: "", managed: true,
    missing: false, parent: NULL_REF, xenstore_data: {}, sm_config: {}, is_a_snapshot: false, snapshot_of: NULL_REF, snapshots: [],
    snapshot_time: EPOCH_DATE, tags: [], allow_caching: false, on_boot: "persist", metadata_of_pool: NULL_REF,
    metadata_latest: false, is_tools_iso: false, cbt_enabled: false,
  }),
  VIF: () => ({
    ...common(), device: "0", network: NULL_REF, VM: NULL_REF, MAC: "", MTU: 1500, currently_attached: false, status_code: 0,
    status_detail: "", runtime_properties: {}, qos_algorithm_type: "", qos_algorithm_params: {}, qos_supported_algorithms: [],
    metrics: NULL_REF, MAC_autogenerated: true, locking_mode: "network_default", ipv4_allowed: [], ipv6_allowed: [],
    ipv4_configuration_mode: "None", ipv4_addresses: [], ipv4_gateway: "", ipv6_configuration_mode: "None", ipv6_addresses: [],
    ipv6_gateway: "",
  }),
  network: () => ({
    ...common(), name_label: "", name_description: "", VIFs: [], PIFs: [], MTU: 1500, bridge: "", managed: true, blobs: {},
    tags: [], default_locking_mode: "unlocked", assigned_ips: {}, purpose: [],
  }),
  task: () => ({
    ...common(), name_label: "", name_description: "", created: EPOCH_DATE, finished: EPOCH_DATE, status: "pending",
    resident_on: NULL_REF, progress: 0, type: "<none/>", result: "", error_info: [], subtask_of: NULL_REF, subtasks: [],
    backtrace: "()",
  }),
  message: () => ({ uuid: "", name: "", priority: 0, cls: "VM", obj_uuid: "", timestamp: EPOCH_DATE, body: "" }),
};

/** A complete record of the class with XAPI's defaults, `overrides` applied on top (unknown keys are ignored). */
export function defaultRecord(cls: XapiClass, overrides: XapiRecord = {}): XapiRecord {
  const record = defaults[cls]();
  for (const [key, value] of Object.entries(overrides)) {
    if (key in record && value !== undefined) record[key] = value;
  }
  return record;
}

/** The field names of a class, in record order. */
export function classFields(cls: XapiClass): string[] {
  return Object.keys(defaults[cls]());
}
