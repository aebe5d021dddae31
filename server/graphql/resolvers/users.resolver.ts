import { Arg, Authorized, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { CreateUserInput, UpdateUserInput, User, toUser } from "../types/auth.js";
import { Role } from "../types/enums.js";

/** User management, ADMIN only: the rules (never the last ADMIN, what each change revokes) are in services/user-service.ts. */
@Resolver()
export class UsersResolver {
  @Authorized(Role.ADMIN)
  @Query(() => [User], { description: "Every user, by name." })
  async users(@Ctx() { services }: GraphQLContext): Promise<User[]> {
    return (await services.auth.users.list()).map(toUser);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => User, { description: "Creates a user; CONFLICT when the name is taken (without regard to case)." })
  async createUser(@Arg("input", () => CreateUserInput) input: CreateUserInput, @Ctx() { services }: GraphQLContext): Promise<User> {
    return toUser(await services.auth.users.create(input));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => User, {
    description: "Changes a user's role or disables/enables it; CONFLICT for the last enabled ADMIN. Disabling signs it out everywhere.",
  })
  async updateUser(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => UpdateUserInput) input: UpdateUserInput,
    @Ctx() { services }: GraphQLContext,
  ): Promise<User> {
    return toUser(await services.auth.users.update(id, input));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, {
    description: "Deletes a user with its sessions and API tokens (its runs and audit entries stay); CONFLICT for the last enabled ADMIN.",
  })
  deleteUser(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<boolean> {
    return services.auth.users.delete(id);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, {
    description: "Sets another user's password and revokes all its sessions and API tokens (your own: changePassword).",
  })
  resetUserPassword(
    @Arg("id", () => ID) id: string,
    @Arg("password", () => String) password: string,
    @Ctx() { principal, services }: GraphQLContext,
  ): Promise<boolean> {
    return services.auth.users.resetPassword(principal!, id, password);
  }
}
