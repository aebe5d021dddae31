/**
 * `checkRestorePoint`: checks that the restore point exists and launches a HEALTH_CHECK run
 * (server/engine/health-check/health-check-executor.ts does the work and records the verdict on the restore point).
 */
import type { Db } from "../db/prisma.js";
import type { Run } from "../db/prisma.js";
import { notFound } from "../errors.js";
import type { HealthCheckRunParams } from "../engine/health-check/health-check-executor.js";
import type { RunLauncher } from "../runs/run-launcher.js";
import { validUuid } from "../domain/ids.js";
import type { Principal } from "../domain/principal.js";

export class HealthCheckService {
  constructor(private readonly deps: { db: Db; launcher: RunLauncher }) {}

  /**
   * @returns the HEALTH_CHECK run (PENDING or RUNNING); its job is the restore point's job, for the history
   * @throws CairnError NOT_FOUND (restore point)
   */
  async checkRestorePoint(restorePointId: string, principal: Principal | undefined): Promise<Run> {
    const point = await this.deps.db.restorePoint.findUnique({
      where: { id: validUuid(restorePointId, "restore point") },
      select: { id: true, jobId: true },
    });
    if (!point) throw notFound("restore point", restorePointId);
    const launcher = this.deps.launcher;
    const params: HealthCheckRunParams = { restorePointId: point.id, srUuid: null, requestedBy: principal?.userId ?? null };
    return launcher.launchStandalone({
      kind: "HEALTH_CHECK",
      params: { ...params },
      trigger: principal?.tokenKind === "API" ? "API" : "MANUAL",
      jobId: point.jobId,
    });
  }
}
