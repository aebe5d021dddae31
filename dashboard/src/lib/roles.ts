/**
 * What each role may do (API.md): ADMIN everything; OPERATOR read, run jobs, cancel runs, restore; VIEWER read only.
 * The dashboard hides the buttons a user may not use; the server refuses them anyway (FORBIDDEN).
 */
export type Role = "ADMIN" | "OPERATOR" | "VIEWER";

export type Action = "configure" | "run" | "restore";

const ALLOWED: Record<Role, readonly Action[]> = {
  ADMIN: ["configure", "run", "restore"],
  OPERATOR: ["run", "restore"],
  VIEWER: [],
};

/** Whether `role` may do `action`: `configure` is creating, editing and removing jobs, remotes and pools. */
export function can(role: string | null | undefined, action: Action): boolean {
  return role !== null && role !== undefined && (ALLOWED[role as Role]?.includes(action) ?? false);
}
