export type XvaErrorCode =
  | "XVA_BAD_OVA"
  | "XVA_BAD_TAR"
  | "XVA_TRUNCATED"
  | "XVA_FIRST_NOT_OVA"
  | "XVA_BAD_CHECKSUM"
  | "XVA_MISSING_CHECKSUM"
  | "XVA_BAD_COUNTER"
  | "XVA_BAD_COMPRESSION"
  | "XVA_BAD_INPUT";

/** Every failure to read or write an XVA; the message names the tar entry and the byte offset when known. */
export class XvaError extends Error {
  readonly code: XvaErrorCode;
  readonly entry?: string;
  readonly offset?: number;

  constructor(code: XvaErrorCode, detail: string, where: { entry?: string; offset?: number } = {}) {
    const place = [
      where.entry === undefined ? undefined : `entry ${where.entry}`,
      where.offset === undefined ? undefined : `at offset ${where.offset}`,
    ]
      .filter((part) => part !== undefined)
      .join(", ");
    super(`${code}: ${detail}${place ? ` (${place})` : ""}`);
    this.name = "XvaError";
    this.code = code;
    this.entry = where.entry;
    this.offset = where.offset;
  }
}
