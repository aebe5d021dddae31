/**
 * The parameters of a RESTORE run, as stored on the run (`Run.params`, JSON, never a secret). The service checks them
 * before launching (server/services/restore-service.ts); the executor reads them back (restore-executor.ts).
 */

export interface RestoreRunParams {
  restorePointId: string;
  /** The pool that receives the VM (resolved from the SR when the caller gave none). */
  poolId: string;
  srUuid: string;
  /** The new VM's name; null: "<original name> (restored <date>)". */
  name: string | null;
  start: boolean;
  /** Who asked (user id), for the history. */
  requestedBy: string | null;
}

/** Reads a run's params back; throws a clear error when they are not a restore's. */
export function parseRestoreParams(value: unknown): RestoreRunParams {
  const params = (value ?? {}) as Partial<RestoreRunParams>;
  for (const field of ["restorePointId", "poolId", "srUuid"] as const) {
    if (typeof params[field] !== "string" || params[field] === "") {
      throw new Error(
        `This restore run has no ${field} in its parameters (got ${JSON.stringify(value)?.slice(0, 200)}); launch the restore again.`,
      );
    }
  }
  return {
    restorePointId: params.restorePointId!,
    poolId: params.poolId!,
    srUuid: params.srUuid!,
    name: typeof params.name === "string" && params.name !== "" ? params.name : null,
    start: params.start === true,
    requestedBy: typeof params.requestedBy === "string" ? params.requestedBy : null,
  };
}

/** The default name of a restored VM: the original name and the date of the restore (UTC, to the minute). */
export function defaultRestoredName(vmName: string, now: Date): string {
  return `${vmName} (restored ${now.toISOString().slice(0, 16).replace("T", " ")} UTC)`;
}
