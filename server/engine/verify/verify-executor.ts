/**
 * Executes a VERIFY run (`verifyRestorePoint`): reads one remote restore point end to end and checks every checksum
 * (verify-restore-points.ts), touching no pool. Ends SUCCESS (OK, or REPAIRED with warnings), or FAILURE when the point is
 * DAMAGED or the verify could not finish. Cancel aborts the reads through the run's signal.
 */
import type { RunContext, RunExecutor, RunOutcome } from "../run-executor.js";
import { type VerifyPointsDeps, verifyRestorePoints } from "./verify-restore-points.js";

/** The parameters of a VERIFY run (`Run.params`). */
export interface VerifyRunParams {
  restorePointId: string;
  /** Rewrite what can be rewritten safely (a damaged VHD footer from its intact copy, LOCAL remotes). */
  repair: boolean;
  requestedBy: string | null;
}

export function parseVerifyParams(value: unknown): VerifyRunParams {
  const params = (value ?? {}) as Partial<VerifyRunParams>;
  if (typeof params.restorePointId !== "string" || params.restorePointId === "") {
    throw new Error(
      `This verify run has no restorePointId in its parameters (got ${JSON.stringify(value)?.slice(0, 200)}); launch the verify again.`,
    );
  }
  return {
    restorePointId: params.restorePointId,
    repair: params.repair === true,
    requestedBy: typeof params.requestedBy === "string" ? params.requestedBy : null,
  };
}

export function createVerifyExecutor(deps: VerifyPointsDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const params = parseVerifyParams(context.run.params);
    const point = await deps.db.restorePoint.findUnique({ where: { id: params.restorePointId } });
    if (!point)
      return {
        status: "FAILURE",
        error: `Restore point ${params.restorePointId} no longer exists (removed by retention?): nothing was verified.`,
      };
    // The one-off verify a user asked for reads a disabled remote too: disabling a remote stops jobs, not a check.
    const summary = await verifyRestorePoints(deps, context, [point], { repair: params.repair, concurrency: 1, allowDisabled: true });
    const [outcome] = summary.outcomes;
    if (!outcome) return { status: "FAILURE", error: "The verify ended without a verdict." };
    if ("error" in outcome) return { status: "FAILURE", error: `The verify of ${outcome.label} could not finish: ${outcome.error}` };
    if (outcome.verdict.status === "DAMAGED") {
      const count = outcome.verdict.problems.length;
      return {
        status: "FAILURE",
        error: `${outcome.label} is damaged (${count} problem${count === 1 ? "" : "s"}, listed on the restore point): restore from another restore point; this one cannot be trusted.`,
      };
    }
    return { status: "SUCCESS" };
  };
}
