/**
 * What the Overview says about pools and VMs, from the API's typed fields only (status, presentedFingerprint, role): never
 * from the words of lastError, which are for people.
 */

export interface OverviewPool {
  id: string;
  name: string;
  status: string;
  lastError: string | null;
  presentedFingerprint: string | null;
}

export interface PoolAttention {
  pool: OverviewPool;
  /** The status in words. */
  statusWords: string;
  /** What to do, as a sentence. */
  todo: string;
}

/** The pools Cairn is not connected to (ERROR or DISCONNECTED), each with what to do, by name. */
export function poolAttention(pools: readonly OverviewPool[]): PoolAttention[] {
  return pools
    .filter((pool) => pool.status === "ERROR" || pool.status === "DISCONNECTED")
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((pool) => {
      if (pool.presentedFingerprint !== null) {
        return {
          pool,
          statusWords: "certificate changed",
          todo: "It presents a TLS certificate other than the one Cairn pinned. Check the new fingerprint on the pool's master, then trust it on the Pools page.",
        };
      }
      if (pool.status === "DISCONNECTED") {
        return {
          pool,
          statusWords: "disconnected",
          todo: "Cairn lost its connection and keeps trying. Check that the pool's master is up and reachable from Cairn.",
        };
      }
      return {
        pool,
        statusWords: "error",
        todo: "Cairn cannot connect. Check the pool's address, user name and password on the Pools page, and that its master is up.",
      };
    });
}

export interface RoleVm {
  name: string;
  role: string;
}

const PRODUCT_LABELS: Record<string, [one: string, many: string]> = {
  REPLICA: ["1 replica", "replicas"],
  RESTORED: ["1 restored VM", "restored VMs"],
  HEALTH_CHECK: ["1 health-check VM", "health-check VMs"],
};

/** Cairn's own VMs (replicas, restored and health-check VMs) grouped by role, names sorted. */
export function vmProducts(vms: readonly RoleVm[]): { role: string; label: string; names: string[] }[] {
  return Object.entries(PRODUCT_LABELS).flatMap(([role, [one, many]]) => {
    const names = vms
      .filter((vm) => vm.role === role)
      .map((vm) => vm.name)
      .sort((a, b) => a.localeCompare(b));
    if (names.length === 0) return [];
    return [{ role, label: names.length === 1 ? one : `${names.length} ${many}`, names }];
  });
}
