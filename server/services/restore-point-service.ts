/** Restore points: what can be restored, as indexed from remotes and pools. */
import type { Db } from "../db/prisma.js";
import type { IntegrityStatus, RestorePointKind } from "../db/generated/enums.js";
import { InputError, notFound } from "../errors.js";
import { removeRestorePoint } from "../engine/restore-points/remove-restore-point.js";
import { planRemovals, type RemovalPlan } from "../engine/restore-points/removal-plan.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import { validUuid } from "../domain/ids.js";
import type { RemoteService } from "./remote-service.js";
import { withoutNul } from "./input-checks.js";
import { paginate, type PageArgs } from "./pagination.js";

export interface RestorePointFilter {
  vmUuid?: string | null;
  remoteId?: string | null;
  jobId?: string | null;
  kind?: RestorePointKind | null;
  from?: Date | null;
  to?: Date | null;
  /** The last verify's verdict. */
  integrity?: IntegrityStatus | null;
}

type RestorePointRow = NonNullable<Awaited<ReturnType<Db["restorePoint"]["findUnique"]>>>;

/** What removing a restore point would do, with the restore point of the backup a merge would go into. */
export interface RestorePointRemoval extends RemovalPlan {
  nextRestorePoint: RestorePointRow | null;
}

export class RestorePointService {
  constructor(
    private readonly db: Db,
    private readonly removal: { registry: PoolRegistry; remotes: RemoteService },
  ) {}

  /** Deletes the backup, snapshot or replica behind a restore point, then the point; returns problems met (merges left). */
  async remove(id: string): Promise<string[]> {
    return removeRestorePoint({ db: this.db, ...this.removal }, await this.get(id));
  }

  /**
   * What `remove` would do to each restore point, worked out now without changing anything (engine/restore-points/
   * removal-plan.ts): each remote is opened once and each VM folder read once for all the points asked about.
   */
  async describeRemovals(ids: readonly string[]): Promise<Map<string, RestorePointRemoval>> {
    const points = await this.db.restorePoint.findMany({ where: { id: { in: [...ids] } } });
    const plans = await planRemovals({ db: this.db, ...this.removal }, points);
    const nextPaths = [...plans.values()].flatMap((plan) => (plan.nextBackup ? [plan.nextBackup.path] : []));
    const nextRows = nextPaths.length > 0 ? await this.db.restorePoint.findMany({ where: { path: { in: nextPaths } } }) : [];
    const removals = new Map<string, RestorePointRemoval>();
    for (const point of points) {
      const plan = plans.get(point.id);
      if (!plan) continue;
      const next = plan.nextBackup
        ? (nextRows.find((row) => row.remoteId === point.remoteId && row.path === plan.nextBackup!.path) ?? null)
        : null;
      removals.set(point.id, { ...plan, nextRestorePoint: next });
    }
    return removals;
  }

  async list(filter: RestorePointFilter = {}, page: PageArgs = {}) {
    return paginate(this.db.restorePoint, this.where(filter), "timestamp", page);
  }

  async get(id: string) {
    const point = await this.db.restorePoint.findUnique({ where: { id: validUuid(id, "restore point") } });
    if (!point) throw notFound("restore point", id);
    return point;
  }

  countForRemote(remoteId: string) {
    return this.db.restorePoint.count({ where: { remoteId } });
  }

  /** What the restore points indexed on a remote take there, in bytes (the sum of their sizes). */
  async bytesForRemote(remoteId: string): Promise<number> {
    const sum = await this.db.restorePoint.aggregate({ where: { remoteId }, _sum: { sizeBytes: true } });
    return Number(sum._sum.sizeBytes ?? 0);
  }

  lastForVm(vmUuid: string) {
    return this.db.restorePoint.findFirst({ where: { vmUuid }, orderBy: [{ timestamp: "desc" }, { id: "desc" }] });
  }

  firstForVm(vmUuid: string) {
    return this.db.restorePoint.findFirst({ where: { vmUuid }, orderBy: [{ timestamp: "asc" }, { id: "asc" }] });
  }

  private where(filter: RestorePointFilter) {
    const conditions: object[] = [];
    if (filter.vmUuid) conditions.push({ vmUuid: withoutNul(filter.vmUuid, "filter.vmUuid") });
    if (filter.remoteId) conditions.push({ remoteId: validUuid(filter.remoteId, "remote") });
    if (filter.jobId) conditions.push({ jobId: validUuid(filter.jobId, "job") });
    if (filter.kind) conditions.push({ kind: filter.kind });
    if (filter.integrity) conditions.push({ integrityStatus: filter.integrity });
    if (filter.from) conditions.push({ timestamp: { gte: filter.from } });
    if (filter.to) conditions.push({ timestamp: { lt: filter.to } });
    if (filter.from && filter.to && filter.from > filter.to) throw new InputError("filter.to", "must be after filter.from");
    return { AND: conditions };
  }
}
