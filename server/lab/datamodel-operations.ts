/**
 * Which operations XAPI allows on a VM, VDI or SR in its current state, and the error it gives for one it does not allow:
 * what it publishes as `allowed_operations` and what `assert_operation_valid` raises before running an operation.
 * From xapi_vm_lifecycle.ml (`allowed_power_states`, `is_allowed_concurrently`, `check_template`, `check_snapshot`,
 * `check_operation_error`, `ignored_ops`), xapi_vdi.ml (`check_operation_error`, `feature_of_op`, pre-Ely operations)
 * and xapi_sr_operations.ml (`valid_operations`, `sm_cap_table`). What a lab VM cannot have (PCI devices, vGPUs, VUSBs,
 * appliances, HA, rolling upgrades, guest feature flags: lab guests have PV drivers) is left out.
 */
import { DATAMODEL, type XapiRecord } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";

export type OperationError = [code: string, params: string[]];

type PowerState = "Halted" | "Paused" | "Running" | "Suspended";
const ALL_STATES: PowerState[] = ["Halted", "Paused", "Suspended", "Running"];

/** `Xapi_globs.pool_allow_clone_suspended_vm`: a pool other_config key that lets a Suspended VM be cloned and copied. */
export const ALLOW_CLONE_SUSPENDED_VM = "allow_clone_suspended_vm";

function cloneSuspendedAllowed(pool: LabPool): boolean {
  return (pool.store.record("pool", pool.poolRef).other_config as Record<string, string>)[ALLOW_CLONE_SUSPENDED_VM] === "true";
}

/** `allowed_power_states`: the power states an operation may start from. */
function allowedPowerStates(pool: LabPool, vm: XapiRecord, op: string): PowerState[] {
  switch (op) {
    case "import":
      return [];
    case "changing_VCPUs":
    case "changing_static_range":
    case "changing_memory_limits":
      return vm.is_control_domain === true ? ["Halted", "Running"] : ["Halted"];
    case "changing_shadow_memory":
    case "changing_NVRAM":
    case "make_into_template":
    case "provision":
    case "start":
    case "start_on":
    case "create_vtpm":
      return ["Halted"];
    case "unpause":
      return ["Paused"];
    case "csvm":
    case "resume":
    case "resume_on":
      return ["Suspended"];
    case "changing_dynamic_range":
      return ["Halted", "Running"];
    case "clone":
    case "copy":
      return vm.is_a_snapshot === true || cloneSuspendedAllowed(pool) ? ["Halted", "Suspended"] : ["Halted"];
    case "create_template":
    case "destroy":
    case "export":
      return ["Halted", "Suspended"];
    case "hard_reboot":
      return ["Paused", "Running"];
    case "checkpoint":
    case "get_boot_record":
    case "shutdown":
    case "hard_shutdown":
      return ["Paused", "Suspended", "Running"];
    case "migrate_send":
      return ["Halted", "Suspended", "Running"];
    case "assert_operation_valid":
    case "metadata_export":
    case "power_state_reset":
    case "revert":
    case "reverting":
    case "snapshot":
    case "update_allowed_operations":
    case "query_services":
      return ALL_STATES;
    default:
      // awaiting_memory_live, call_plugin, clean_reboot, clean_shutdown, changing_*_live, data_source_op, pause,
      // pool_migrate, send_sysrq, send_trigger, snapshot_with_quiesce, sysprep, suspend
      return ["Running"];
  }
}

const LONG_COPIES = ["clone", "copy", "export"];
const SNAPSHOTS = ["snapshot", "checkpoint"];
const CONCURRENT_PAIRS: Array<[string, string]> = [
  ["snapshot_with_quiesce", "snapshot"],
  ["migrate_send", "metadata_export"],
  ["migrate_send", "clean_shutdown"],
  ["migrate_send", "clean_reboot"],
];

/** `is_allowed_concurrently`: whether `op` may run while `current` operations run. */
function allowedConcurrently(op: string, current: string[]): boolean {
  const within = (group: string[]) => group.includes(op) && current.every((running) => group.includes(running));
  if (within(LONG_COPIES) || within(SNAPSHOTS) || within(["get_boot_record"])) return true;
  if (op === "hard_shutdown") return !current.includes(op);
  if (op === "hard_reboot") return !current.some((running) => running === "hard_shutdown" || running === "hard_reboot");
  return current.length === 1 && CONCURRENT_PAIRS.some(([state, transition]) => state === current[0] && transition === op);
}

const TEMPLATE_OPERATIONS = [
  "changing_dynamic_range",
  "changing_static_range",
  "changing_memory_limits",
  "changing_shadow_memory",
  "changing_VCPUs",
  "changing_NVRAM",
  "clone",
  "copy",
  "export",
  "metadata_export",
  "provision",
];
const SNAPSHOT_OPERATIONS = ["revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"];
const CONTROL_DOMAIN_OPERATIONS = [
  "data_source_op",
  "changing_memory_live",
  "awaiting_memory_live",
  "metadata_export",
  "changing_dynamic_range",
  "changing_memory_limits",
  "changing_static_range",
  "start",
  "start_on",
  "changing_VCPUs",
  "destroy",
];

/** `check_operation_error` for a VM: the error XAPI raises for `op` now, or undefined when it is allowed. */
export function vmOperationError(pool: LabPool, ref: string, op: string): OperationError | undefined {
  const vm = pool.store.record("VM", ref);
  const blocked = (vm.blocked_operations as Record<string, string>)[op];
  if (blocked !== undefined) return ["OPERATION_BLOCKED", [ref, blocked]];
  const power = vm.power_state as PowerState;
  const states = allowedPowerStates(pool, vm, op);
  if (!states.includes(power)) {
    return ["VM_BAD_POWER_STATE", [ref, states.map((state) => state.toLowerCase()).join(", "), power.toLowerCase()]];
  }
  const current = Object.entries(vm.current_operations as Record<string, string>);
  if (
    current.length > 0 &&
    !allowedConcurrently(
      op,
      current.map(([, running]) => running),
    )
  ) {
    const [task, running] =
      current.length === 1
        ? current[0]
        : [`{${current.map(([task]) => task).join(",")}}`, `{${current.map(([, running]) => running).join(",")}}`];
    return ["OTHER_OPERATION_IN_PROGRESS", ["VM", ref, running, task]];
  }
  const isDefaultTemplate = vm.is_default_template === true || (vm.other_config as Record<string, string>).default_template === "true";
  if (vm.is_a_template === true && vm.is_a_snapshot !== true) {
    const allowed = TEMPLATE_OPERATIONS.includes(op) || ((op === "destroy" || op === "migrate_send") && !isDefaultTemplate);
    if (!allowed) return ["VM_IS_TEMPLATE", [ref, op]];
  }
  if (vm.is_a_snapshot === true && !SNAPSHOT_OPERATIONS.includes(op)) return ["VM_IS_SNAPSHOT", [ref, op]];
  if (op === "provision" && vm.is_a_template !== true) return ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE", []];
  if (op === "revert" && vm.is_a_snapshot !== true) return ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT", []];
  if (vm.is_control_domain === true) {
    if (op === "changing_VCPUs" || op === "destroy") return ["OPERATION_NOT_ALLOWED", ["This operation is not allowed on dom0"]];
    if (!CONTROL_DOMAIN_OPERATIONS.includes(op)) return ["OPERATION_NOT_ALLOWED", ["This operation is not allowed on a control domain"]];
  }
  // VSS is gone from XAPI: snapshot_with_quiesce is never in allowed_operations (the lab's `quiesce` fault plays old hosts).
  if (op === "snapshot_with_quiesce") return ["VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", [ref]];
  if (op === "query_services" && (vm.other_config as Record<string, string>).is_system_domain !== "true") {
    return ["NOT_SYSTEM_DOMAIN", [ref]];
  }
  if (op === "create_vtpm" && (vm.VTPMs as string[]).length > 0)
    return ["VTPM_MAX_AMOUNT_REACHED", [String((vm.VTPMs as string[]).length)]];
  return undefined;
}

/** `ignored_ops`: operations XAPI never lists in a VM's allowed_operations. */
const VM_IGNORED = new Set([
  "create_template",
  "power_state_reset",
  "csvm",
  "get_boot_record",
  "send_sysrq",
  "send_trigger",
  "query_services",
  "shutdown",
  "call_plugin",
  "changing_memory_live",
  "awaiting_memory_live",
  "changing_memory_limits",
  "changing_shadow_memory_live",
  "changing_VCPUs",
  "assert_operation_valid",
  "data_source_op",
  "update_allowed_operations",
  "import",
  "reverting",
]);

/** `update_allowed_operations` for a VM. */
export function vmAllowedOperations(pool: LabPool, ref: string): string[] {
  return DATAMODEL.enums.vm_operations.filter((op) => !VM_IGNORED.has(op) && vmOperationError(pool, ref, op) === undefined);
}

// The SM features of the lab's SR types: sm's EXTSR.py and ISOSR.py CAPABILITIES (what XAPI reads from the SM objects).
const SM_FEATURES: Record<string, string[]> = {
  ext: [
    "SR_PROBE",
    "SR_SUPPORTS_LOCAL_CACHING",
    "SR_UPDATE",
    "VDI_CREATE",
    "VDI_DELETE",
    "VDI_ATTACH",
    "VDI_DETACH",
    "VDI_UPDATE",
    "VDI_CLONE",
    "VDI_SNAPSHOT",
    "VDI_RESIZE",
    "VDI_MIRROR",
    "VDI_GENERATE_CONFIG",
    "VDI_RESET_ON_BOOT",
    "ATOMIC_PAUSE",
    "VDI_CONFIG_CBT",
    "VDI_ACTIVATE",
    "VDI_DEACTIVATE",
    "THIN_PROVISIONING",
    "VDI_READ_CACHING",
  ],
  iso: ["VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH", "SR_SCAN", "SR_ATTACH", "SR_DETACH"],
};

/** The features of an SR type (also what the lab's SM objects advertise). */
export function smFeatures(type: string): string[] {
  return SM_FEATURES[type] ?? SM_FEATURES.ext;
}

/** `feature_of_op` (xapi_vdi.ml). */
const VDI_FEATURE: Record<string, string | undefined> = {
  snapshot: "VDI_SNAPSHOT",
  destroy: "VDI_DELETE",
  resize: "VDI_RESIZE",
  update: "VDI_UPDATE",
  resize_online: "VDI_RESIZE_ONLINE",
  generate_config: "VDI_GENERATE_CONFIG",
  clone: "VDI_CLONE",
  revert_to: "VDI_CLONE",
  revert_from: "VDI_CLONE",
  mirror: "VDI_MIRROR",
  enable_cbt: "VDI_CONFIG_CBT",
  disable_cbt: "VDI_CONFIG_CBT",
  data_destroy: "VDI_CONFIG_CBT",
  list_changed_blocks: "VDI_CONFIG_CBT",
  set_on_boot: "VDI_RESET_ON_BOOT",
};

const VDI_LIVE = ["snapshot", "resize_online", "blocked", "clone", "revert_to", "mirror", "enable_cbt", "disable_cbt", "data_destroy"];
const NOT_FOR_CBT_METADATA = [
  "clone",
  "copy",
  "disable_cbt",
  "enable_cbt",
  "mirror",
  "resize",
  "resize_online",
  "snapshot",
  "revert_to",
  "revert_from",
  "set_on_boot",
];

/** `check_operation_error` for a VDI (xapi_vdi.ml), without HA, rolling upgrades and mirroring. */
export function vdiOperationError(pool: LabPool, ref: string, op: string): OperationError | undefined {
  const vdi = pool.store.record("VDI", ref);
  const current = Object.entries(vdi.current_operations as Record<string, string>);
  const busy = current.find(([, running]) => running !== "copy");
  if (busy !== undefined) return ["OTHER_OPERATION_IN_PROGRESS", ["VDI", ref, busy[1], busy[0]]];
  const sr = pool.store.has("SR", vdi.SR) ? pool.store.record("SR", vdi.SR) : undefined;
  if (
    op === "resize" &&
    !(sr?.PBDs as string[] | undefined)?.some(
      (pbd) => pool.store.has("PBD", pbd) && pool.store.record("PBD", pbd).currently_attached === true,
    )
  ) {
    return ["SR_HAS_NO_PBDS", [String(vdi.SR)]];
  }
  const activeVbds = (vdi.VBDs as string[])
    .filter((vbd) => pool.store.has("VBD", vbd))
    .map((vbd) => pool.store.record("VBD", vbd))
    .filter((vbd) => vbd.currently_attached === true);
  const live = VDI_LIVE.includes(op);
  const blockedByAttach = live
    ? false
    : op === "copy"
      ? activeVbds.some((vbd) => vbd.mode === "RW")
      : op === "list_changed_blocks"
        ? activeVbds.some((vbd) => !pool.store.has("VM", vbd.VM) || pool.store.record("VM", vbd.VM).is_a_snapshot !== true)
        : activeVbds.length > 0;
  if (blockedByAttach) return ["VDI_IN_USE", [ref, op]];
  const feature = VDI_FEATURE[op];
  if (feature !== undefined && !smFeatures(String(sr?.type ?? "ext")).includes(feature))
    return ["SR_OPERATION_NOT_SUPPORTED", [String(vdi.SR)]];
  if (vdi.type === "cbt_metadata" && NOT_FOR_CBT_METADATA.includes(op)) return ["VDI_INCOMPATIBLE_TYPE", [ref, "cbt_metadata"]];
  if (vdi.cbt_enabled === true && (op === "mirror" || op === "set_on_boot")) return ["VDI_CBT_ENABLED", [ref]];
  const resetOnBoot = vdi.on_boot === "reset";
  const checkDestroy = (): OperationError | undefined =>
    sr?.is_tools_sr === true ? ["SR_OPERATION_NOT_SUPPORTED", [String(vdi.SR)]] : vdi.type === "rrd" ? ["VDI_HAS_RRDS", [ref]] : undefined;
  switch (op) {
    case "forget":
      return vdi.type === "rrd" ? ["VDI_HAS_RRDS", [ref]] : undefined;
    case "destroy":
    case "revert_from":
      return checkDestroy();
    case "data_destroy":
      if (vdi.is_a_snapshot !== true) return ["OPERATION_NOT_ALLOWED", [`VDI is not a snapshot: ${ref}`]];
      if (vdi.cbt_enabled !== true) return ["VDI_NO_CBT_METADATA", [ref]];
      return checkDestroy();
    case "snapshot":
      if (vdi.sharable === true) return ["VDI_IS_SHARABLE", [ref]];
      if (resetOnBoot) return ["VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", []];
      if (current.some(([, running]) => running === "copy"))
        return ["OPERATION_NOT_ALLOWED", ["Snapshot operation not allowed during copy."]];
      return undefined;
    case "copy":
      return resetOnBoot ? ["VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", []] : undefined;
    case "enable_cbt":
    case "disable_cbt":
      if (vdi.is_a_snapshot === true) return ["OPERATION_NOT_ALLOWED", [`VDI is a snapshot: ${ref}`]];
      if (vdi.type !== "user" && vdi.type !== "system") return ["VDI_INCOMPATIBLE_TYPE", [ref, String(vdi.type)]];
      return resetOnBoot ? ["VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", []] : undefined;
    case "revert_to":
      return vdi.is_a_snapshot !== true ? ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT", []] : undefined;
    default:
      return undefined;
  }
}

/** `update_allowed_operations_internal`: the pre-Ely operations but `blocked` (CA-260245) and `force_unlock` (CA-281176). */
const VDI_LISTED = ["clone", "copy", "resize", "resize_online", "snapshot", "destroy", "forget", "update", "generate_config"];

export function vdiAllowedOperations(pool: LabPool, ref: string): string[] {
  return VDI_LISTED.filter((op) => vdiOperationError(pool, ref, op) === undefined);
}

/** xapi_sr_operations.ml `all_ops` and `sm_cap_table`. */
const SR_OPERATIONS = [
  "scan",
  "destroy",
  "forget",
  "plug",
  "unplug",
  "vdi_create",
  "vdi_destroy",
  "vdi_resize",
  "vdi_clone",
  "vdi_snapshot",
  "vdi_mirror",
  "vdi_enable_cbt",
  "vdi_disable_cbt",
  "vdi_data_destroy",
  "vdi_list_changed_blocks",
  "vdi_set_on_boot",
  "vdi_introduce",
  "vdi_revert",
  "update",
  "pbd_create",
  "pbd_destroy",
];
const SR_CAPABILITY: Record<string, string> = {
  vdi_create: "VDI_CREATE",
  vdi_destroy: "VDI_DELETE",
  vdi_resize: "VDI_RESIZE",
  vdi_introduce: "VDI_INTRODUCE",
  vdi_mirror: "VDI_MIRROR",
  vdi_enable_cbt: "VDI_CONFIG_CBT",
  vdi_disable_cbt: "VDI_CONFIG_CBT",
  vdi_data_destroy: "VDI_CONFIG_CBT",
  vdi_list_changed_blocks: "VDI_CONFIG_CBT",
  vdi_set_on_boot: "VDI_RESET_ON_BOOT",
  update: "SR_UPDATE",
  vdi_revert: "VDI_REVERT",
  vdi_snapshot: "VDI_SNAPSHOT",
};

/** `valid_operations` for an SR: the error of `op`, or undefined. */
export function srOperationError(pool: LabPool, ref: string, op: string): OperationError | undefined {
  const sr = pool.store.record("SR", ref);
  let features = smFeatures(String(sr.type));
  if (sr.is_tools_sr === true) features = features.filter((feature) => feature !== "VDI_CREATE" && feature !== "VDI_DELETE");
  const capability = SR_CAPABILITY[op];
  if (capability !== undefined && !features.includes(capability)) return ["SR_OPERATION_NOT_SUPPORTED", [ref]];
  const pbds = (sr.PBDs as string[]).filter((pbd) => pool.store.has("PBD", pbd));
  if ((op === "destroy" || op === "forget") && pbds.some((pbd) => pool.store.record("PBD", pbd).currently_attached === true)) {
    return ["SR_HAS_PBD", [ref]];
  }
  if (op === "destroy" && pbds.length === 0) return ["SR_HAS_NO_PBDS", [ref]];
  if (
    op === "destroy" &&
    (sr.VDIs as string[]).some(
      (vdi) => pool.store.has("VDI", vdi) && pool.store.record("VDI", vdi).managed === true && pool.store.record("VDI", vdi).type !== "rrd",
    )
  ) {
    return ["SR_NOT_EMPTY", []];
  }
  const current = Object.entries(sr.current_operations as Record<string, string>);
  if (current.length > 0) {
    const blocking = current.find(([, running]) => running !== "plug");
    if (op !== "plug" || blocking !== undefined) {
      const [task, running] = blocking ?? current[0];
      return ["OTHER_OPERATION_IN_PROGRESS", ["SR", ref, running, task]];
    }
  }
  return undefined;
}

export function srAllowedOperations(pool: LabPool, ref: string): string[] {
  return SR_OPERATIONS.filter((op) => srOperationError(pool, ref, op) === undefined);
}

/** VBD `valid_operations` (xapi_vbd_helpers.ml), without the sharing checks and guest feature flags. */
export function vbdAllowedOperations(pool: LabPool, ref: string): string[] {
  const vbd = pool.store.record("VBD", ref);
  const current = Object.values(vbd.current_operations as Record<string, string>);
  const power = pool.store.has("VM", vbd.VM) ? pool.store.record("VM", vbd.VM).power_state : "Halted";
  const denied = new Set<string>();
  if (current.length > 0) for (const op of ["attach", "eject", "insert", "plug", "unplug", "unplug_force"]) denied.add(op);
  if (vbd.unpluggable !== true) ["unplug", "unplug_force"].forEach((op) => denied.add(op));
  if (vbd.type !== "CD") ["insert", "eject"].forEach((op) => denied.add(op));
  denied.add(vbd.empty === true ? "eject" : "insert");
  if (power === "Running") {
    if (vbd.currently_attached === true) denied.add("plug");
    else ["unplug", "unplug_force"].forEach((op) => denied.add(op));
  } else {
    ["plug", "unplug", "unplug_force"].forEach((op) => denied.add(op));
    if (power !== "Paused") ["pause", "unpause"].forEach((op) => denied.add(op));
  }
  return DATAMODEL.enums.vbd_operations.filter((op) => !denied.has(op));
}

/** VIF `valid_operations` (xapi_vif_helpers.ml). */
export function vifAllowedOperations(pool: LabPool, ref: string): string[] {
  const vif = pool.store.record("VIF", ref);
  if (Object.keys(vif.current_operations as object).length > 0) return [];
  const power = pool.store.has("VM", vif.VM) ? pool.store.record("VM", vif.VM).power_state : "Halted";
  if (power !== "Running") return ["attach"];
  return ["attach", vif.currently_attached === true ? "unplug" : "plug"];
}

/** A host that runs: every host operation of the enum but `power_on` (it is on) and `apply_updates` (none pending). */
export function hostAllowedOperations(host: XapiRecord): string[] {
  if (host.enabled !== true) return ["provision", "evacuate", "shutdown", "reboot", "enable"];
  return ["provision", "evacuate", "shutdown", "reboot", "vm_start", "vm_resume", "vm_migrate"];
}
