import { SafeIntScalar } from "../types/scalars.js";
import { Arg, Authorized, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { toRemote } from "../mappers.js";
import { Role } from "../types/enums.js";
import { Remote, RemoteInput, RemoteTest } from "../types/remote.js";

@Resolver(() => Remote)
export class RemoteResolver {
  @Authorized(Role.VIEWER)
  @Query(() => [Remote])
  async remotes(@Ctx() { services, receivedAt }: GraphQLContext): Promise<Remote[]> {
    return (await services.remotes.list(receivedAt)).map(toRemote);
  }

  @Authorized(Role.VIEWER)
  @Query(() => Remote, { nullable: true })
  async remote(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<Remote | null> {
    return toRemote(await services.remotes.get(id));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Remote, { description: "Adds a remote after checking its settings and that it can be opened." })
  async createRemote(@Arg("input", () => RemoteInput) input: RemoteInput, @Ctx() { services }: GraphQLContext): Promise<Remote> {
    return toRemote(await services.remotes.create(input));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Remote)
  async updateRemote(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => RemoteInput) input: RemoteInput,
    @Ctx() { services }: GraphQLContext,
  ): Promise<Remote> {
    return toRemote(await services.remotes.update(id, input));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, { description: "Forgets a remote (its files stay); refused while a job targets it." })
  removeRemote(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<boolean> {
    return services.remotes.remove(id);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => RemoteTest, { description: "Writes, reads back, verifies and deletes a 16 MiB file; records speeds and free space." })
  async testRemote(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<RemoteTest> {
    const result = await services.remotes.test(id);
    return { ...result, testedAt: new Date(result.testedAt) };
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Int, { description: "Re-indexes the restore points a remote holds; returns how many." })
  async scanRemote(@Arg("id", () => ID) id: string, @Ctx() { services, log }: GraphQLContext): Promise<number> {
    const { count, problems } = await services.remotes.scan(id);
    if (problems.length > 0) log.warn({ remoteId: id, problems }, "scanRemote found problems");
    return count;
  }

  @FieldResolver(() => SafeIntScalar, {
    description: "What Cairn's backups take on this remote: the sum of the sizes of its indexed restore points.",
  })
  backupBytes(@Root() remote: Remote, @Ctx() { services }: GraphQLContext): Promise<number> {
    return services.restorePoints.bytesForRemote(remote.id);
  }

  @FieldResolver(() => Int, { description: "Restore points indexed on this remote." })
  restorePointCount(@Root() remote: Remote, @Ctx() { services }: GraphQLContext): Promise<number> {
    return services.restorePoints.countForRemote(remote.id);
  }
}
