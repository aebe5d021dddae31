/**
 * `restoreVm`: checks the request (the restore point exists, the SR is in a connected pool and can hold VM disks, a
 * snapshot restores only within its pool) and launches a RESTORE run (server/engine/restore/restore-executor.ts does the work).
 */
import type { Db } from "../db/prisma.js";
import type { Run } from "../db/prisma.js";
import { CairnError, ErrorCode, InputError, notFound } from "../errors.js";
import type { RestoreRunParams } from "../engine/restore/restore-params.js";
import type { RunLauncher } from "../runs/run-launcher.js";
import { listSrs, type SrView } from "../xapi/inventory.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import { validUuid } from "../domain/ids.js";
import { optionalText, requiredText } from "./input-checks.js";
import type { Principal } from "../domain/principal.js";

export interface RestoreVmInput {
  restorePointId: string;
  srUuid: string;
  poolId?: string | null;
  name?: string | null;
  start?: boolean | null;
}

export class RestoreService {
  constructor(private readonly deps: { db: Db; registry: PoolRegistry; launcher: RunLauncher }) {}

  /**
   * @returns the RESTORE run (PENDING or RUNNING)
   * @throws CairnError NOT_FOUND (restore point, pool), BAD_USER_INPUT naming the field (SR not found / ISO / in another
   *   pool, a snapshot onto another pool, a bad name), UNAVAILABLE (the pool is not connected, no run machinery)
   */
  async restoreVm(input: RestoreVmInput, principal: Principal | undefined): Promise<Run> {
    const point = await this.deps.db.restorePoint.findUnique({ where: { id: validUuid(input.restorePointId, "restore point") } });
    if (!point) throw notFound("restore point", input.restorePointId);
    const srUuid = requiredText(input.srUuid, "input.srUuid", 64);
    const name = optionalText(input.name, "input.name", 255) ?? null;
    const sr = await this.findSr(srUuid, input.poolId ?? null);
    if (sr.contentType === "iso")
      throw new InputError("input.srUuid", `SR ${sr.name} (${sr.uuid}) is an ISO library: it cannot hold VM disks; choose a storage SR`);
    if ((point.kind === "SNAPSHOT" || point.kind === "REPLICA") && point.poolId !== sr.poolId) {
      throw new InputError(
        "input.srUuid",
        `restore point ${point.id} is a ${point.kind === "SNAPSHOT" ? "snapshot" : "replica"} kept on its own pool: it is restored with VM.copy inside that pool, so the SR must be in pool ${point.poolId}; to restore onto another pool, use a backup on a remote (XVA or VHD_CHAIN)`,
      );
    }
    const launcher = this.deps.launcher;
    const params: RestoreRunParams = {
      restorePointId: point.id,
      poolId: sr.poolId,
      srUuid: sr.uuid,
      name,
      start: input.start === true,
      requestedBy: principal?.userId ?? null,
    };
    return launcher.launchStandalone({
      kind: "RESTORE",
      params: { ...params },
      trigger: principal?.tokenKind === "API" ? "API" : "MANUAL",
    });
  }

  private async findSr(srUuid: string, poolId: string | null): Promise<SrView> {
    if (poolId) {
      const pool = await this.deps.db.pool.findUnique({ where: { id: validUuid(poolId, "pool") } });
      if (!pool) throw notFound("pool", poolId);
      const connection = this.deps.registry.get(pool.id);
      if (!connection || connection.status !== "CONNECTED") {
        throw new CairnError(
          ErrorCode.Unavailable,
          `Pool ${pool.name} is not connected now${connection?.lastError ? ` (${connection.lastError})` : ""}: restore once it is back.`,
        );
      }
      const sr = listSrs(connection).find((candidate) => candidate.uuid === srUuid);
      if (!sr) throw new InputError("input.srUuid", `pool ${pool.name} has no SR with uuid ${srUuid}; list them with srs(poolId)`);
      return sr;
    }
    const connected = this.deps.registry.all().filter((connection) => connection.status === "CONNECTED");
    const sr = connected.flatMap((connection) => listSrs(connection)).find((candidate) => candidate.uuid === srUuid);
    if (!sr)
      throw new InputError("input.srUuid", `no connected pool has an SR with uuid ${srUuid}; list them with srs, or reconnect its pool`);
    return sr;
  }
}
