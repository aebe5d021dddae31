import { Arg, Authorized, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from "type-graphql";
import { NEWEST_RESTORE_POINTS, OLDEST_RESTORE_POINTS, POOL_VIEWS_BY_ID, batched } from "../batch.js";
import type { GraphQLContext } from "../context.js";
import { givenField } from "../given-fields.js";
import { toPool, toRestorePoint, toSr, toVm } from "../mappers.js";
import { PoolStatus, Role } from "../types/enums.js";
import { DateTimeScalar } from "../types/scalars.js";
import { Host, Pool, PoolConnectionChange, PoolInput, Sr, Vm } from "../types/pool.js";
import { RestorePoint } from "../types/restore-point.js";

@Resolver(() => Pool)
export class PoolResolver {
  @Authorized(Role.VIEWER)
  @Query(() => [Pool])
  async pools(@Ctx() { services }: GraphQLContext): Promise<Pool[]> {
    return (await services.pools.list()).map((row) => toPool(row, services));
  }

  @Authorized(Role.VIEWER)
  @Query(() => Pool, { description: "One pool by id (NOT_FOUND when Cairn has no such pool)." })
  async pool(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<Pool> {
    return toPool(await services.pools.get(id), services);
  }

  @Authorized(Role.VIEWER)
  @Query(() => [Vm], {
    description: "VMs of every connected pool (or one), optionally searched by name/uuid and filtered by tags (all must match).",
  })
  async vms(
    @Arg("poolId", () => ID, { nullable: true }) poolId: string | null,
    @Arg("search", () => String, { nullable: true }) search: string | null,
    @Arg("tags", () => [String], { nullable: true }) tags: string[] | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<Vm[]> {
    // An unknown pool is NOT_FOUND; a known pool this process is not connected to has no live VM.
    if (poolId) await services.pools.get(poolId);
    return services.pools.vms({ poolId, search, tags }).map(toVm);
  }

  @Authorized(Role.VIEWER)
  @Query(() => [Sr])
  async srs(@Arg("poolId", () => ID, { nullable: true }) poolId: string | null, @Ctx() { services }: GraphQLContext): Promise<Sr[]> {
    if (poolId) await services.pools.get(poolId);
    return services.pools.srs(poolId).map(toSr);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Pool, {
    description: "Connects a pool; fails (and saves nothing) when the pool cannot be reached or refuses the credentials.",
  })
  async connectPool(@Arg("input", () => PoolInput) input: PoolInput, @Ctx() { services }: GraphQLContext): Promise<Pool> {
    return toPool(await services.pools.connect(input), services);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Pool)
  async updatePool(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => PoolInput) input: PoolInput,
    @Ctx() { services }: GraphQLContext,
  ): Promise<Pool> {
    return toPool(await services.pools.update(id, input), services);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Pool, {
    description:
      "Trusts the TLS certificate the pool presents now, once its fingerprint was checked on the host (a replaced certificate); reconnects.",
  })
  async trustPoolCertificate(
    @Arg("id", () => ID) id: string,
    @Arg("fingerprint", () => String) fingerprint: string,
    @Ctx() { services }: GraphQLContext,
  ): Promise<Pool> {
    return toPool(await services.pools.trustCertificate(id, fingerprint), services);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean)
  removePool(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<boolean> {
    return services.pools.remove(id);
  }

  @FieldResolver(() => [Host])
  hosts(@Root() pool: Pool, @Ctx() { services }: GraphQLContext): Host[] {
    return services.pools.hosts(pool.id);
  }

  @FieldResolver(() => [PoolConnectionChange], {
    description:
      "The latest changes of the connection's state (connected, connecting, error with why), newest first, as the Cairn processes holding the connection saw them: stored, so they outlive a restart (the newest 50).",
  })
  async connectionHistory(@Root() pool: Pool, @Ctx() { services }: GraphQLContext): Promise<PoolConnectionChange[]> {
    return (await services.pools.connectionHistory(pool.id)).map((change) => ({
      at: change.at,
      status: change.status as PoolStatus,
      reason: change.reason ?? null,
    }));
  }

  @FieldResolver(() => [Sr], { name: "srs" })
  poolSrs(@Root() pool: Pool, @Ctx() { services }: GraphQLContext): Sr[] {
    return services.pools.srs(pool.id).map(toSr);
  }

  @FieldResolver(() => [Vm], { name: "vms" })
  poolVms(@Root() pool: Pool, @Ctx() { services }: GraphQLContext): Vm[] {
    return services.pools.vms({ poolId: pool.id }).map(toVm);
  }
}

@Resolver(() => Vm)
export class VmResolver {
  @FieldResolver(() => Pool, { nullable: true })
  pool(@Root() vm: Vm, @Ctx() context: GraphQLContext): Pool | null | Promise<Pool | null> {
    // Given by vmProtection, which lists a thousand VMs; else batched (read and mapped once per pool).
    const given = givenField<Pool | null>(vm, "pool");
    if (given) return given.value;
    return batched(context, POOL_VIEWS_BY_ID, vm.poolId).then((pool) => pool ?? null);
  }

  @FieldResolver(() => RestorePoint, { nullable: true, description: "The newest restore point of this VM." })
  async lastRestorePoint(@Root() vm: Vm, @Ctx() context: GraphQLContext): Promise<RestorePoint | null> {
    const row = await batched(context, NEWEST_RESTORE_POINTS, vm.uuid);
    return row ? toRestorePoint(row) : null;
  }

  @FieldResolver(() => DateTimeScalar, { nullable: true, description: "The time of the oldest restore point still held." })
  async protectedSince(@Root() vm: Vm, @Ctx() context: GraphQLContext): Promise<Date | null> {
    return (await batched(context, OLDEST_RESTORE_POINTS, vm.uuid))?.timestamp ?? null;
  }
}

@Resolver(() => Sr)
export class SrResolver {
  @FieldResolver(() => Boolean, { description: "Whether every host of the pool sees this SR (a VM on it can run on any host)." })
  shared(@Root() sr: Sr, @Ctx() { services }: GraphQLContext): boolean {
    return services.pools.srShared(sr.poolId, sr.uuid);
  }

  @FieldResolver(() => Pool, { nullable: true })
  async pool(@Root() sr: Sr, @Ctx() { services }: GraphQLContext): Promise<Pool | null> {
    const row = await services.pools.get(sr.poolId).catch(() => null);
    return row ? toPool(row, services) : null;
  }
}
