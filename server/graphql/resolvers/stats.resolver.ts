import { Arg, Authorized, Ctx, ID, Int, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { toRestorePoint, toVm } from "../mappers.js";
import { Role, StatsGroupBy } from "../types/enums.js";
import { DateTimeScalar } from "../types/scalars.js";
import { StatsBucket, VmProtection } from "../types/stats.js";

@Resolver()
export class StatsResolver {
  @Authorized(Role.VIEWER)
  @Query(() => [StatsBucket], { description: "Backup runs between from and to, grouped by day, ISO week, job or VM." })
  backupStats(
    @Arg("from", () => DateTimeScalar) from: Date,
    @Arg("to", () => DateTimeScalar) to: Date,
    @Arg("groupBy", () => StatsGroupBy) groupBy: StatsGroupBy,
    @Ctx() { services }: GraphQLContext,
  ): Promise<StatsBucket[]> {
    return services.stats.backupStats(from, to, groupBy);
  }

  @Authorized(Role.VIEWER)
  @Query(() => [VmProtection], {
    description: "Each known VM with its newest good restore point; protected when younger than olderThanHours (default 24).",
  })
  async vmProtection(
    @Arg("poolId", () => ID, { nullable: true }) poolId: string | null,
    @Arg("olderThanHours", () => Int, { nullable: true }) olderThanHours: number | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<VmProtection[]> {
    if (poolId) await services.pools.get(poolId);
    const rows = await services.stats.vmProtection(poolId, olderThanHours);
    const live = new Map(services.pools.vms().map((vm) => [vm.uuid, vm]));
    const known = await services.stats.inventory(rows.map((r) => r.vmUuid));
    return Promise.all(
      rows.map(async (row) => {
        const inventory = known.get(row.vmUuid)!;
        const vm = live.get(row.vmUuid) ?? { ...inventory, ref: "", poolId: inventory.poolId };
        const point = row.lastGoodRestorePointId ? await services.restorePoints.get(row.lastGoodRestorePointId) : null;
        return {
          vm: toVm(vm),
          lastGoodRestorePoint: point ? toRestorePoint(point) : null,
          ageHours: row.ageHours,
          protected: row.protected,
        };
      }),
    );
  }
}
