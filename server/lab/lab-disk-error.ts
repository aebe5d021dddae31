export type LabDiskErrorCode = "LAB_DISK_MISSING" | "LAB_DISK_EXISTS" | "LAB_DISK_BAD_SIZE" | "LAB_DISK_OUT_OF_RANGE";

/** A misuse of the lab's disk store; the RPC layer reports it to clients as `VDI_IO_ERROR [message]`. */
export class LabDiskError extends Error {
  readonly code: LabDiskErrorCode;

  constructor(code: LabDiskErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = "LabDiskError";
    this.code = code;
  }
}
