/**
 * `verifyRestorePoint`: checks that the restore point exists and is a backup on a remote, and launches a VERIFY run
 * (server/engine/verify/verify-executor.ts reads it end to end and records the verdict on the restore point).
 */
import type { Db } from "../db/prisma.js";
import type { Run } from "../db/prisma.js";
import { InputError, notFound } from "../errors.js";
import type { VerifyRunParams } from "../engine/verify/verify-executor.js";
import type { RunLauncher } from "../runs/run-launcher.js";
import { validUuid } from "../domain/ids.js";
import type { Principal } from "../domain/principal.js";

export class VerifyService {
  constructor(private readonly deps: { db: Db; launcher: RunLauncher }) {}

  /**
   * The run carries no job: a verify may take long, and the job that wrote the point must stay free to run meanwhile (a
   * run with a job would make that job's next runs CONFLICT, or SKIPPED when scheduled). The restore point is in its params.
   *
   * @returns the VERIFY run (PENDING or RUNNING)
   * @throws CairnError NOT_FOUND (restore point), BAD_USER_INPUT (a SNAPSHOT or REPLICA: on a pool, not on a remote; `repair`
   *   not a boolean)
   */
  async verifyRestorePoint(restorePointId: string, repair: boolean | null | undefined, principal: Principal | undefined): Promise<Run> {
    if (repair !== null && repair !== undefined && typeof repair !== "boolean") throw new InputError("repair", "must be true or false");
    const point = await this.deps.db.restorePoint.findUnique({
      where: { id: validUuid(restorePointId, "restore point") },
      select: { id: true, kind: true, remoteId: true, path: true },
    });
    if (!point) throw notFound("restore point", restorePointId);
    if (point.kind === "SNAPSHOT" || point.kind === "REPLICA" || !point.remoteId || !point.path) {
      throw new InputError(
        "id",
        `restore point ${point.id} is a ${point.kind}, which lives on a pool, not on a remote: verify reads backups on remotes (XVA and VHD_CHAIN restore points). Use checkRestorePoint to check it by booting it.`,
      );
    }
    const launcher = this.deps.launcher;
    const params: VerifyRunParams = { restorePointId: point.id, repair: repair === true, requestedBy: principal?.userId ?? null };
    return launcher.launchStandalone({
      kind: "VERIFY",
      params: { ...params },
      trigger: principal?.tokenKind === "API" ? "API" : "MANUAL",
      jobId: null,
    });
  }
}
