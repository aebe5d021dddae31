import { CairnError, ErrorCode } from "../../errors.js";

/**
 * Why an NBD read failed, as data: the engine falls back to the export path on any of them, and says which.
 * - `unreachable`: no TCP connection to the NBD server.
 * - `refused`: the server refused the export (unknown name, dead session, a VDI without data) or requires TLS.
 * - `protocol`: the server spoke something else than fixed-newstyle NBD, or broke the protocol.
 * - `broken`: the connection closed or timed out with reads in flight.
 * - `read-failed`: the server answered a read with an error (`errno`).
 */
export type NbdFailure = "unreachable" | "refused" | "protocol" | "broken" | "read-failed";

export class NbdError extends CairnError {
  constructor(
    readonly failure: NbdFailure,
    message: string,
    options?: { cause?: unknown; errno?: number },
  ) {
    super(
      ErrorCode.Unavailable,
      message,
      { nbdFailure: failure, ...(options?.errno !== undefined ? { errno: options.errno } : {}) },
      options,
    );
    this.name = "NbdError";
  }
}
