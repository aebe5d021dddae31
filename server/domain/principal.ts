/** Who is calling, as authenticated from a bearer token, and what each role may do. */
import { CairnError, ErrorCode } from "../errors.js";

/** The roles, as the database's Role enum spells them (kept apart so the domain imports nothing; tsc checks they agree). */
export type Role = "ADMIN" | "OPERATOR" | "VIEWER";
export type TokenKind = "SESSION" | "API";

export interface Principal {
  userId: string;
  username: string;
  /** The effective role: an API token's role, never above its owner's. */
  role: Role;
  tokenId: string;
  /** SESSION (signed in with a password) or API (an API token): a run started with an API token is triggered API. */
  tokenKind: TokenKind;
}

export const ROLE_RANK: Record<Role, number> = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };

export function hasRole(principal: Principal | undefined, needed: Role): boolean {
  return principal !== undefined && ROLE_RANK[principal.role] >= ROLE_RANK[needed];
}

export function requireRole(principal: Principal | undefined, needed: Role): Principal {
  if (!principal) throw new CairnError(ErrorCode.Unauthenticated, "Sign in first: send Authorization: Bearer <token>.");
  if (!hasRole(principal, needed)) {
    throw new CairnError(ErrorCode.Forbidden, `This needs the ${needed} role; you are ${principal.role}.`);
  }
  return principal;
}
