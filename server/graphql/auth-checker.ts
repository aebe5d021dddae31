/**
 * `@Authorized(Role.X)` on a field means "at least role X"; `@Authorized()` means "signed in". Failures are typed errors with
 * a message that says what is missing (type-graphql's default is a bare "Access denied!").
 */
import type { AuthChecker } from "type-graphql";
import { requireRole } from "../domain/principal.js";
import type { GraphQLContext } from "./context.js";
import type { Role } from "./types/enums.js";

export const authChecker: AuthChecker<GraphQLContext, Role> = ({ context }, roles) => {
  requireRole(context.principal, roles[0] ?? "VIEWER");
  return true;
};
