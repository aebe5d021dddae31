/** How the audit page reads its filter form and writes its entries. */
import type { AuditEntryRecord, AuditLogFilterInput } from "./api/operations-audit.js";

/**
 * The mutations of schema.graphql, offered as suggestions in the Operation filter (a name missing here can still be
 * typed: the server checks it).
 */
export const AUDITED_ACTIONS = [
  "cancelRun",
  "changePassword",
  "checkRestorePoint",
  "connectPool",
  "createApiToken",
  "createJob",
  "createRemote",
  "createUser",
  "deleteUser",
  "login",
  "logout",
  "removeJob",
  "removePool",
  "removeRemote",
  "removeRestorePoint",
  "resetUserPassword",
  "restoreFiles",
  "restoreVm",
  "revokeApiToken",
  "revokeSession",
  "runJob",
  "scanRemote",
  "testRemote",
  "trustPoolCertificate",
  "updateJob",
  "updatePool",
  "updateRemote",
  "updateUser",
  "verifyRestorePoint",
] as const;

/** The filter form's fields, as typed. `since`/`until` are `datetime-local` values (the browser's time zone). */
export interface AuditFilterForm {
  username: string;
  action: string;
  result: "" | "success" | "failure";
  since: string;
  until: string;
}

export const EMPTY_AUDIT_FILTER: AuditFilterForm = { username: "", action: "", result: "", since: "", until: "" };

/** The API's filter for the form, or the problems of its fields (by field name) when it cannot be sent. */
export function auditFilter(form: AuditFilterForm): { filter: AuditLogFilterInput } | { errors: Record<string, string> } {
  const filter: AuditLogFilterInput = {};
  const errors: Record<string, string> = {};
  if (form.username.trim()) filter.username = form.username.trim();
  if (form.action.trim()) {
    const action = form.action.trim();
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(action)) filter.action = action;
    else errors.action = "Give the name of an operation, such as createJob.";
  }
  if (form.result) filter.success = form.result === "success";
  const since = form.since ? new Date(form.since) : null;
  const until = form.until ? new Date(form.until) : null;
  if (since && Number.isNaN(since.getTime())) errors.since = "Not a date and time.";
  else if (since) filter.since = since.toISOString();
  if (until && Number.isNaN(until.getTime())) errors.until = "Not a date and time.";
  else if (until) filter.until = until.toISOString();
  if (since && until && !errors.since && !errors.until && until <= since) errors.until = "Must be after “From”.";
  return Object.keys(errors).length > 0 ? { errors } : { filter };
}

/** Who did it, in words: the user, and how (a session, or which API token). */
export function describeActor(entry: Pick<AuditEntryRecord, "username" | "tokenKind" | "tokenName">): { user: string; via: string | null } {
  const user = entry.username ?? "anonymous";
  if (entry.tokenKind === "API") return { user, via: `API token ${entry.tokenName ?? "(deleted)"}` };
  if (entry.tokenKind === "SESSION") return { user, via: "session" };
  return { user, via: null };
}

/**
 * The object acted on, in words: `job nightly`, or its id when it had no name. `userName` names a user the entry gives
 * by id only (the users the page knows).
 */
export function describeObject(
  entry: Pick<AuditEntryRecord, "objectType" | "objectName" | "objectId">,
  userName: (id: string) => string | undefined = () => undefined,
): string {
  const known = entry.objectType === "User" && entry.objectId ? userName(entry.objectId) : undefined;
  const what = entry.objectName ?? known ?? entry.objectId;
  if (!entry.objectType && !what) return "–";
  return [entry.objectType?.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase(), what].filter(Boolean).join(" ");
}
