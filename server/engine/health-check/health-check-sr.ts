/**
 * Where a health check restores its temporary VM:
 * 1. the SR asked for (the job's `healthCheckSrUuid`, or the caller's), found in any connected pool, when it can hold disks;
 *    for a SNAPSHOT or REPLICA point it must be in the point's own pool (those restore with VM.copy, inside one pool):
 *    otherwise the point's own SR is used, with a warning;
 * 2. with no SR asked for: a SNAPSHOT or REPLICA point uses its own SR (the copy stays next to the original);
 * 3. a backup on a remote (XVA, VHD_CHAIN) uses the default SR of the pool that holds the VM now (or last held it), else the
 *    first SR of that pool that is not an ISO library; when that pool is not connected, the first connected pool.
 */
import type { Db } from "../../db/prisma.js";
import type { PoolConnection, XapiRecord } from "../../xapi/pool-connection.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";

export interface HealthCheckSr {
  connection: PoolConnection;
  srUuid: string;
  srRef: string;
  srName: string;
}

interface PointRow {
  kind: string;
  vmUuid: string;
  poolId: string | null;
  srUuid: string | null;
}

export async function chooseHealthCheckSr(
  deps: { db: Db; registry: PoolRegistry },
  point: PointRow,
  askedSrUuid: string | null,
  warn: (message: string) => Promise<void>,
): Promise<HealthCheckSr> {
  const connected = deps.registry.all().filter((connection) => connection.status === "CONNECTED");
  const onPool = point.kind === "SNAPSHOT" || point.kind === "REPLICA";
  if (askedSrUuid) {
    const found = findSr(connected, askedSrUuid);
    if (!found) await warn(`the health check SR ${askedSrUuid} is in no connected pool: another SR is used`);
    else if (found.sr.content_type === "iso")
      await warn(`the health check SR ${String(found.sr.name_label)} is an ISO library: another SR is used`);
    else if (onPool && found.connection.poolId !== point.poolId) {
      await warn(
        `the health check SR ${String(found.sr.name_label)} is not in the pool of this ${point.kind.toLowerCase()} (copied with VM.copy, inside its pool): its own SR is used`,
      );
    } else return view(found.connection, found.sr);
  }
  if (onPool) {
    const connection = connected.find((c) => c.poolId === point.poolId);
    if (!connection) throw new Error(`the pool of this ${point.kind.toLowerCase()} (${point.poolId}) is not connected`);
    const sr = connection.records("SR").find((record) => record.uuid === point.srUuid);
    if (!sr) throw new Error(`the SR of this ${point.kind.toLowerCase()} (${point.srUuid}) is no longer in its pool`);
    return view(connection, sr);
  }
  const live = connected.find((c) => c.records("VM").some((vm) => vm.uuid === point.vmUuid && !vm.is_a_snapshot));
  const lastSeen = live ? undefined : await deps.db.vmInventory.findUnique({ where: { uuid: point.vmUuid }, select: { poolId: true } });
  const pools = [live ?? connected.find((c) => c.poolId === lastSeen?.poolId), ...connected].filter(
    (c): c is PoolConnection => c !== undefined,
  );
  for (const connection of pools) {
    const defaultSr = connection.records("pool")[0]?.default_SR;
    const storage = connection.records("SR").filter((sr) => sr.content_type !== "iso");
    const sr = storage.find((record) => record.$ref === defaultSr) ?? storage[0];
    if (sr) return view(connection, sr);
  }
  throw new Error("no connected pool has an SR that can hold VM disks: connect a pool, or set the job's healthCheckSrUuid");
}

function findSr(connections: PoolConnection[], srUuid: string): { connection: PoolConnection; sr: XapiRecord } | undefined {
  for (const connection of connections) {
    const sr = connection.records("SR").find((record) => record.uuid === srUuid);
    if (sr) return { connection, sr };
  }
  return undefined;
}

function view(connection: PoolConnection, sr: XapiRecord): HealthCheckSr {
  return { connection, srUuid: sr.uuid, srRef: sr.$ref, srName: String(sr.name_label ?? sr.uuid) };
}
