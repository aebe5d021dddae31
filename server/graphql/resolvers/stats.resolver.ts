import type { GraphQLResolveInfo } from "graphql";
import { Arg, Authorized, Ctx, ID, Info, Int, Mutation, Query, Resolver } from "type-graphql";
import { JOB_VIEWS_BY_ID, POOL_VIEWS_BY_ID } from "../batch.js";
import type { GraphQLContext } from "../context.js";
import { giveField, selects } from "../given-fields.js";
import { toRestorePoint, toVm } from "../mappers.js";
import { Role, StatsGroupBy } from "../types/enums.js";
import { RunFilter } from "../types/run.js";
import { FileDownload } from "../types/restore-point.js";
import { DateTimeScalar } from "../types/scalars.js";
import { ExportFormat, StatsBucket, StorageGroupBy, StorageSeries, TrendInterval, VmProtection, VmRpo } from "../types/stats.js";
import type { RpoFigures } from "../../services/stats-service.js";

const TIME_ZONE = "An IANA time zone name (Europe/Paris; default UTC): days and weeks are those of that zone, DST included.";

@Resolver()
export class StatsResolver {
  @Authorized(Role.VIEWER)
  @Query(() => [StatsBucket], {
    description: "Backup runs created between from and to, grouped by day or ISO week (of timeZone), job, VM or remote.",
  })
  backupStats(
    @Arg("from", () => DateTimeScalar) from: Date,
    @Arg("to", () => DateTimeScalar) to: Date,
    @Arg("groupBy", () => StatsGroupBy) groupBy: StatsGroupBy,
    @Arg("timeZone", () => String, { nullable: true, description: TIME_ZONE }) timeZone: string | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<StatsBucket[]> {
    return services.stats.backupStats(from, to, groupBy, timeZone);
  }

  @Authorized(Role.VIEWER)
  @Query(() => [VmProtection], {
    description:
      "Each known VM with its newest good restore point; protected when younger than olderThanHours (default 24). at: as it stood then (default now).",
  })
  async vmProtection(
    @Arg("poolId", () => ID, { nullable: true }) poolId: string | null,
    @Arg("olderThanHours", () => Int, { nullable: true }) olderThanHours: number | null,
    @Arg("at", () => DateTimeScalar, { nullable: true }) at: Date | null,
    @Ctx() context: GraphQLContext,
    @Info() info: GraphQLResolveInfo,
  ): Promise<VmProtection[]> {
    const { services } = context;
    if (poolId) await services.pools.get(poolId);
    const rows = await services.stats.vmProtection(poolId, olderThanHours, at);
    // Each VM as a pool shows it now, else as the inventory last saw it (the row has it: no query per VM, nor of a thousand).
    const live = new Map(services.pools.vms().map((vm) => [vm.uuid, vm]));
    const items = rows.map((row) => ({
      vm: toVm({ ref: "", ...(live.get(row.vmUuid) ?? row.inventory) }),
      lastGoodRestorePoint: row.lastGoodRestorePoint ? toRestorePoint(row.lastGoodRestorePoint) : null,
      ageHours: row.ageHours,
      protected: row.protected,
    }));
    // The dashboard asks each VM's pool and each point's job: read once here and given to the items (given-fields.ts).
    const [pools, jobs] = await Promise.all([
      selects(info, ["vm", "pool"]) ? POOL_VIEWS_BY_ID([...new Set(items.map((item) => item.vm.poolId))], context) : undefined,
      selects(info, ["lastGoodRestorePoint", "job"])
        ? JOB_VIEWS_BY_ID([...new Set(items.flatMap((item) => item.lastGoodRestorePoint?.jobId ?? []))], context)
        : undefined,
    ]);
    for (const item of items) {
      if (pools) giveField(item.vm, "pool", pools.get(item.vm.poolId) ?? null);
      const point = item.lastGoodRestorePoint;
      if (jobs && point) giveField(point, "job", (point.jobId ? jobs.get(point.jobId) : undefined) ?? null);
    }
    return items;
  }

  @Authorized(Role.VIEWER)
  @Query(() => VmRpo, {
    description:
      "A VM's restore points between from and to (default: the 30 days up to now) and the RPO achieved (longest and current gap between good restore points) against the target of its schedules.",
  })
  async vmRpo(
    @Arg("vmUuid", () => String) vmUuid: string,
    @Arg("from", () => DateTimeScalar, { nullable: true }) from: Date | null,
    @Arg("to", () => DateTimeScalar, { nullable: true }) to: Date | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<VmRpo> {
    const figures = await services.stats.vmRpo(vmUuid, from, to);
    return toVmRpo(figures, await vmViews(services, [figures.vmUuid]));
  }

  @Authorized(Role.VIEWER)
  @Query(() => [VmRpo], { description: "vmRpo of every known VM (of one pool, or all), in name order." })
  async rpoReport(
    @Arg("poolId", () => ID, { nullable: true }) poolId: string | null,
    @Arg("from", () => DateTimeScalar, { nullable: true }) from: Date | null,
    @Arg("to", () => DateTimeScalar, { nullable: true }) to: Date | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<VmRpo[]> {
    if (poolId) await services.pools.get(poolId);
    const rows = await services.stats.rpoReport(poolId, from, to);
    const vms = await vmViews(
      services,
      rows.map((r) => r.vmUuid),
    );
    return rows.map((row) => toVmRpo(row, vms));
  }

  @Authorized(Role.VIEWER)
  @Query(() => [StorageSeries], {
    description:
      "Bytes held on remotes, per remote or per VM, at the end of each day or week between from and to (at most 400 buckets), from the restore points' sizes and when they were recorded and removed.",
  })
  storageTrend(
    @Arg("from", () => DateTimeScalar) from: Date,
    @Arg("to", () => DateTimeScalar) to: Date,
    @Arg("groupBy", () => StorageGroupBy) groupBy: StorageGroupBy,
    @Arg("interval", () => TrendInterval, { nullable: true, defaultValue: TrendInterval.DAY }) interval: TrendInterval,
    @Arg("timeZone", () => String, { nullable: true, description: TIME_ZONE }) timeZone: string | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<StorageSeries[]> {
    return services.stats.storageTrend(from, to, groupBy, interval ?? TrendInterval.DAY, timeZone);
  }

  @Authorized(Role.VIEWER)
  @Mutation(() => FileDownload, {
    description:
      "A short-lived, single-use link (GET, no header needed) to the runs matching filter, newest first, as CSV or JSON (columns in docs/API.md), streamed.",
  })
  async exportRuns(
    @Arg("filter", () => RunFilter, { nullable: true }) filter: RunFilter | null,
    @Arg("format", () => ExportFormat) format: ExportFormat,
    @Ctx() { services, principal }: GraphQLContext,
  ): Promise<FileDownload> {
    // Refused now rather than at download time: a bad filter is the caller's to fix, a missing job is NOT_FOUND like runs().
    if (filter?.jobId) await services.jobs.get(filter.jobId);
    await services.runs.where(filter ?? {});
    return services.stats.runsExport.issue(filter ?? {}, format, principal);
  }
}

type Views = Map<string, { uuid: string; name: string; powerState: string; tags: string[]; poolId: string }>;

/** Each VM as a pool shows it now, else as the inventory last saw it (a VM of a disconnected pool). */
async function vmViews(services: GraphQLContext["services"], uuids: string[]): Promise<Views> {
  const live = new Map(services.pools.vms().map((vm) => [vm.uuid, vm]));
  const known = await services.stats.inventory(uuids.filter((uuid) => !live.has(uuid)));
  const views: Views = new Map();
  for (const uuid of uuids) {
    const vm = live.get(uuid) ?? known.get(uuid);
    if (vm) views.set(uuid, vm);
  }
  return views;
}

function toVmRpo(row: RpoFigures, vms: Views): VmRpo {
  return {
    vm: toVm({ ref: "", ...vms.get(row.vmUuid)! }),
    targetSeconds: row.targetSeconds,
    graceSeconds: row.graceSeconds,
    maxGapSeconds: row.maxGapSeconds,
    currentGapSeconds: row.currentGapSeconds,
    restorePoints: row.restorePoints,
    goodRestorePoints: row.goodRestorePoints,
    met: row.met,
    points: row.points.map((p) => ({ restorePointId: p.id, timestamp: p.timestamp, good: p.good, gapSeconds: p.gapSeconds })),
  };
}
