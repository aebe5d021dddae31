import { LabDiskError } from "./lab-disk-error.js";

/**
 * An error as XAPI reports it on the wire: a code spelled exactly as XAPI spells it
 * (`HANDLE_INVALID`, `VM_BAD_POWER_STATE`, ...) and string parameters.
 *
 * The JSON-RPC layer turns it into `{ code: 1, message: code, data: params }`, a task failure into
 * `error_info = [code, ...params]`; the xen-api client rebuilds an `XapiError` with the same code.
 */
export class XapiFailure extends Error {
  readonly code: string;
  readonly params: string[];

  constructor(code: string, params: readonly unknown[] = []) {
    const strings = params.map((param) => String(param));
    super(`${code}(${strings.join(", ")})`);
    this.name = "XapiFailure";
    this.code = code;
    this.params = strings;
  }

  /** `[code, ...params]`, the shape of `task.error_info` and of JSON-RPC 1.0 errors. */
  toErrorInfo(): string[] {
    return [this.code, ...this.params];
  }
}

/** Wraps anything thrown into an XapiFailure: unknown errors become `INTERNAL_ERROR [message]`. */
export function toXapiFailure(error: unknown): XapiFailure {
  if (error instanceof XapiFailure) return error;
  if (error instanceof LabDiskError) return new XapiFailure("VDI_IO_ERROR", [error.message]);
  const message = error instanceof Error ? error.message : String(error);
  return new XapiFailure("INTERNAL_ERROR", [message]);
}
