import { Arg, Authorized, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { ApiToken, ApiTokenSecret, AuthPayload, Session, User, toUser } from "../types/auth.js";
import { Role } from "../types/enums.js";

@Resolver()
export class AuthResolver {
  @Query(() => User, { nullable: true, description: "The signed-in user (null without a token)." })
  async me(@Ctx() { principal, services }: GraphQLContext): Promise<User | null> {
    if (!principal) return null;
    // The role is the principal's: what this credential may do (an API token's role, never above its owner's).
    return { ...toUser(await services.auth.users.get(principal.userId)), role: principal.role as Role };
  }

  @Mutation(() => AuthPayload, {
    description: "Signs in; the token goes in `Authorization: Bearer <token>`. Repeated failures are throttled (RATE_LIMITED).",
  })
  async login(
    @Arg("username", () => String) username: string,
    @Arg("password", () => String) password: string,
    @Ctx() { services, clientAddress }: GraphQLContext,
  ): Promise<AuthPayload> {
    const { token, user } = await services.auth.login(username, password, clientAddress);
    return { token, user: toUser(user) };
  }

  @Authorized()
  @Mutation(() => Boolean, { description: "Revokes the token of this request." })
  logout(@Ctx() { principal, services }: GraphQLContext): Promise<boolean> {
    return services.auth.logout(principal!);
  }

  @Authorized()
  @Query(() => [ApiToken], {
    description: "Your API tokens at or below the role you act with (an ADMIN sees everyone's; `userId`: one user's, ADMIN for others).",
  })
  async apiTokens(
    @Arg("userId", () => ID, { nullable: true }) userId: string | null,
    @Ctx() { principal, services }: GraphQLContext,
  ): Promise<ApiToken[]> {
    return (await services.auth.listApiTokens(principal!, userId)).map((t) => ({
      id: t.id,
      name: t.name,
      role: t.role as Role,
      owner: toUser(t.user),
      createdAt: t.createdAt,
      revokedAt: t.revokedAt,
      lastUsedAt: t.lastUsedAt,
      createdFrom: t.createdFrom,
    }));
  }

  @Authorized()
  @Mutation(() => ApiTokenSecret, {
    description: "Creates an API token; its secret is in this answer only. Needs a signed-in session: API tokens cannot create tokens.",
  })
  async createApiToken(
    @Arg("name", () => String) name: string,
    @Arg("role", () => Role) role: Role,
    @Ctx() { principal, services, clientAddress }: GraphQLContext,
  ): Promise<ApiTokenSecret> {
    const { token, row } = await services.auth.createApiToken(principal!, name, role, clientAddress);
    return { id: row.id, name: row.name, role: row.role as Role, token };
  }

  @Authorized()
  @Mutation(() => Boolean, { description: "Revokes an API token: your own at or below your role, or anyone's for an ADMIN." })
  revokeApiToken(@Arg("id", () => ID) id: string, @Ctx() { principal, services }: GraphQLContext): Promise<boolean> {
    return services.auth.revokeApiToken(principal!, id);
  }

  @Authorized()
  @Mutation(() => Boolean, {
    description:
      "Changes your own password (needs a signed-in session and the current password; wrong guesses are throttled). Your other sessions are signed out; this one and your API tokens are kept.",
  })
  changePassword(
    @Arg("currentPassword", () => String) currentPassword: string,
    @Arg("newPassword", () => String) newPassword: string,
    @Ctx() { principal, services, clientAddress }: GraphQLContext,
  ): Promise<boolean> {
    return services.auth.users.changePassword(principal!, currentPassword, newPassword, clientAddress);
  }

  @Authorized()
  @Query(() => [Session], { description: "Your live sign-in sessions (`userId`: another user's, ADMIN only)." })
  sessions(
    @Arg("userId", () => ID, { nullable: true }) userId: string | null,
    @Ctx() { principal, services }: GraphQLContext,
  ): Promise<Session[]> {
    return services.auth.users.sessions(principal!, userId);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: "Ends a session: your own, or anyone's for an ADMIN. Ending the current one signs out." })
  revokeSession(@Arg("id", () => ID) id: string, @Ctx() { principal, services }: GraphQLContext): Promise<boolean> {
    return services.auth.users.revokeSession(principal!, id);
  }
}
