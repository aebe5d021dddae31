/**
 * The VMs a smart pattern selects now, computed in the browser from the `vms` query with the server's rules
 * (server/engine/vm-selection.ts): pools (empty: all), every tag of tagsAll, one of tagsAny (when any), none of
 * tagsNone, power states (empty: all); a VM tagged `cairn:no-bak` is always left out. Sorted by name, then uuid.
 */
export const NO_BACKUP_TAG = "cairn:no-bak";

export const POWER_STATES = ["Running", "Halted", "Paused", "Suspended"] as const;

export interface SmartPattern {
  poolIds: readonly string[];
  tagsAll: readonly string[];
  tagsAny: readonly string[];
  tagsNone: readonly string[];
  powerStates: readonly string[];
}

export interface PreviewVm {
  uuid: string;
  name: string;
  tags: readonly string[];
  powerState: string;
  pool: { id: string } | null;
}

export interface SelectionPreview<V extends PreviewVm> {
  /** What a run starting now would back up. */
  selected: V[];
  /** Matched the pattern but carry `cairn:no-bak`. */
  excluded: V[];
}

export function previewSmartSelection<V extends PreviewVm>(pattern: SmartPattern, vms: readonly V[]): SelectionPreview<V> {
  const matches = vms.filter(
    (vm) =>
      (pattern.poolIds.length === 0 || (vm.pool !== null && pattern.poolIds.includes(vm.pool.id))) &&
      pattern.tagsAll.every((tag) => vm.tags.includes(tag)) &&
      (pattern.tagsAny.length === 0 || pattern.tagsAny.some((tag) => vm.tags.includes(tag))) &&
      !pattern.tagsNone.some((tag) => vm.tags.includes(tag)) &&
      (pattern.powerStates.length === 0 || pattern.powerStates.includes(vm.powerState)),
  );
  const byName = (a: V, b: V) => a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid);
  return {
    selected: matches.filter((vm) => !vm.tags.includes(NO_BACKUP_TAG)).sort(byName),
    excluded: matches.filter((vm) => vm.tags.includes(NO_BACKUP_TAG)).sort(byName),
  };
}

/** Every tag carried by one of the VMs, sorted. */
export function allTags(vms: readonly PreviewVm[]): string[] {
  return [...new Set(vms.flatMap((vm) => vm.tags))].sort((a, b) => a.localeCompare(b));
}

/** `"prod, web"` → `["prod", "web"]` (trimmed, no empties, no duplicates). */
export function parseTagList(text: string): string[] {
  return [
    ...new Set(
      text
        .split(",")
        .map((tag) => tag.trim())
        .filter(Boolean),
    ),
  ];
}
