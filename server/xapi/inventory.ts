/** Typed views of a pool's live objects: the VMs a user can protect, the SRs they can target, the hosts. */
import type { PoolConnection, XapiRecord } from "./pool-connection.js";

export interface VmView {
  ref: string;
  uuid: string;
  name: string;
  powerState: string;
  tags: string[];
  poolId: string;
}

export interface SrView {
  ref: string;
  uuid: string;
  name: string;
  type: string;
  contentType: string;
  freeBytes: number;
  sizeBytes: number;
  poolId: string;
}

export interface HostView {
  ref: string;
  uuid: string;
  name: string;
  address: string;
  poolId: string;
}

/** Real VMs only: not templates, snapshots or the control domain. */
export function listVms(connection: PoolConnection): VmView[] {
  return connection
    .records("VM")
    .filter((vm) => !vm.is_a_template && !vm.is_a_snapshot && !vm.is_control_domain)
    .map((vm) => ({
      ref: vm.$ref,
      uuid: vm.uuid,
      name: String(vm.name_label ?? ""),
      powerState: String(vm.power_state ?? "Halted"),
      tags: Array.isArray(vm.tags) ? (vm.tags as string[]) : [],
      poolId: connection.poolId,
    }));
}

export function listSrs(connection: PoolConnection): SrView[] {
  return connection.records("SR").map((sr: XapiRecord) => {
    const size = Number(sr.physical_size ?? 0);
    const used = Number(sr.physical_utilisation ?? 0);
    return {
      ref: sr.$ref,
      uuid: sr.uuid,
      name: String(sr.name_label ?? ""),
      type: String(sr.type ?? ""),
      contentType: String(sr.content_type ?? ""),
      sizeBytes: size,
      freeBytes: Math.max(0, size - used),
      poolId: connection.poolId,
    };
  });
}

export function listHosts(connection: PoolConnection): HostView[] {
  return connection.records("host").map((host) => ({
    ref: host.$ref,
    uuid: host.uuid,
    name: String(host.name_label ?? ""),
    address: String(host.address ?? ""),
    poolId: connection.poolId,
  }));
}
