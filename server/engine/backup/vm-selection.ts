/**
 * Which VMs a run backs up, resolved when it starts: the job's explicit uuids, or its smart pattern evaluated against the
 * pools' VMs now. A VM tagged `cairn:no-bak` is always left out. Pure: the caller passes the VMs it sees.
 */
import type { Selection } from "../../domain/job-settings.js";
import { Tag } from "../../xapi/other-config-keys.js";

export interface SelectableVm {
  uuid: string;
  name: string;
  poolId: string;
  tags: string[];
  powerState: string;
}

export interface ResolvedSelection {
  /** VMs to back up, in name order. */
  vms: SelectableVm[];
  /** Explicitly selected uuids that no connected pool shows now (each becomes a VM failure). */
  missing: string[];
  /** VMs left out because of the `cairn:no-bak` tag. */
  excluded: SelectableVm[];
}

export function resolveSelection(selection: Selection, visible: SelectableVm[]): ResolvedSelection {
  const excluded: SelectableVm[] = [];
  const keep = (vm: SelectableVm) => {
    if (vm.tags.includes(Tag.NoBackup)) {
      excluded.push(vm);
      return false;
    }
    return true;
  };
  if (!selection.smart) {
    const byUuid = new Map(visible.map((vm) => [vm.uuid, vm]));
    const found = selection.vmUuids.map((uuid) => byUuid.get(uuid)).filter((vm): vm is SelectableVm => vm !== undefined);
    return {
      vms: found.filter(keep).sort(byName),
      missing: selection.vmUuids.filter((uuid) => !byUuid.has(uuid)),
      excluded,
    };
  }
  const smart = selection.smart;
  const vms = visible.filter(
    (vm) =>
      (smart.poolIds.length === 0 || smart.poolIds.includes(vm.poolId)) &&
      smart.tagsAll.every((tag) => vm.tags.includes(tag)) &&
      (smart.tagsAny.length === 0 || smart.tagsAny.some((tag) => vm.tags.includes(tag))) &&
      !smart.tagsNone.some((tag) => vm.tags.includes(tag)) &&
      (smart.powerStates.length === 0 || smart.powerStates.includes(vm.powerState)),
  );
  return { vms: vms.filter(keep).sort(byName), missing: [], excluded };
}

function byName(a: SelectableVm, b: SelectableVm): number {
  return a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid);
}
