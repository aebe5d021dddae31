import { CairnError, ErrorCode } from "../errors.js";

/**
 * The answer of an operation whose engine is not built yet: UNAVAILABLE, saying so plainly. Nothing pretends to have run.
 */
export function notAvailableYet(operation: string, needs: string): never {
  throw new CairnError(ErrorCode.Unavailable, `${operation} is not available in this version of Cairn: it needs ${needs}, which is not built yet.`);
}
