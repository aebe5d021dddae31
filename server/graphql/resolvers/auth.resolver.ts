import { Arg, Authorized, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { ApiToken, ApiTokenSecret, AuthPayload, User } from "../types/auth.js";
import { Role } from "../types/enums.js";

@Resolver()
export class AuthResolver {
  @Query(() => User, { nullable: true, description: "The signed-in user (null without a token)." })
  me(@Ctx() { principal }: GraphQLContext): User | null {
    return principal ? { id: principal.userId, username: principal.username, role: principal.role as Role } : null;
  }

  @Mutation(() => AuthPayload, { description: "Signs in; the token goes in `Authorization: Bearer <token>`." })
  async login(
    @Arg("username", () => String) username: string,
    @Arg("password", () => String) password: string,
    @Ctx() { services }: GraphQLContext,
  ): Promise<AuthPayload> {
    const { token, user } = await services.auth.login(username, password);
    return { token, user: { id: user.id, username: user.username, role: user.role as Role } };
  }

  @Authorized()
  @Mutation(() => Boolean, { description: "Revokes the token of this request." })
  logout(@Ctx() { principal, services }: GraphQLContext): Promise<boolean> {
    return services.auth.logout(principal!);
  }

  @Authorized()
  @Query(() => [ApiToken], { description: "Your API tokens (an admin sees everyone's)." })
  async apiTokens(@Ctx() { principal, services }: GraphQLContext): Promise<ApiToken[]> {
    return (await services.auth.listApiTokens(principal!)).map((t) => ({ ...t, role: t.role as Role }));
  }

  @Authorized()
  @Mutation(() => ApiTokenSecret, { description: "Creates an API token; its secret is in this answer only." })
  async createApiToken(
    @Arg("name", () => String) name: string,
    @Arg("role", () => Role) role: Role,
    @Ctx() { principal, services }: GraphQLContext,
  ): Promise<ApiTokenSecret> {
    const { token, row } = await services.auth.createApiToken(principal!, name, role);
    return { id: row.id, name: row.name, role: row.role as Role, token };
  }

  @Authorized()
  @Mutation(() => Boolean)
  revokeApiToken(@Arg("id", () => ID) id: string, @Ctx() { principal, services }: GraphQLContext): Promise<boolean> {
    return services.auth.revokeApiToken(principal!, id);
  }
}
