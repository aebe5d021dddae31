/**
 * What each role may do (API.md): ADMIN everything; OPERATOR read, run jobs, cancel runs, restore; VIEWER read only.
 * The dashboard hides the buttons a user may not use; the server refuses them anyway (FORBIDDEN).
 */
export type Role = "ADMIN" | "OPERATOR" | "VIEWER";

/** `administer` is managing users and reading the audit log. */
export type Action = "configure" | "run" | "restore" | "administer";

/** Every role, highest first. */
export const ROLES: readonly Role[] = ["ADMIN", "OPERATOR", "VIEWER"];

const ALLOWED: Record<Role, readonly Action[]> = {
  ADMIN: ["configure", "run", "restore", "administer"],
  OPERATOR: ["run", "restore"],
  VIEWER: [],
};

/** Whether `role` may do `action`: `configure` is creating, editing and removing jobs, remotes and pools. */
export function can(role: string | null | undefined, action: Action): boolean {
  return role !== null && role !== undefined && (ALLOWED[role as Role]?.includes(action) ?? false);
}

/**
 * The roles a credential acting with `role` may hand out (a new API token's): its own and those below, as the server
 * allows. Nothing for an unknown role.
 */
export function rolesAtOrBelow(role: string | null | undefined): Role[] {
  const index = ROLES.indexOf(role as Role);
  return index < 0 ? [] : ROLES.slice(index);
}
