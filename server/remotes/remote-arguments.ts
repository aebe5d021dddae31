import { RemoteError } from "./remote-error.js";
import type { ByteRange } from "./remote.js";

/** Checks of the non-path arguments the remotes share, each failing with INVALID_ARGUMENT. */

function isOffset(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Checks a {@link ByteRange} and returns it with defaults resolved (`end` undefined = to the end). */
export function checkByteRange(
  range: ByteRange | undefined,
  where: { remote: string; path: string },
): { start: number; end: number | undefined } {
  const start = range?.start ?? 0;
  const end = range?.end;
  const refuse = (detail: string): never => {
    throw new RemoteError({ code: "INVALID_ARGUMENT", remote: where.remote, operation: "read", path: where.path, detail });
  };
  if (!isOffset(start)) refuse(`range start must be a non-negative integer, got ${String(start)}`);
  if (end !== undefined && !isOffset(end)) refuse(`range end must be a non-negative integer, got ${String(end)}`);
  if (end !== undefined && end < start) refuse(`range end ${end} is before range start ${start} (end is inclusive)`);
  return { start, end };
}

/** Checks that [offset, offset + length) lies within a file of `size` bytes. */
export function checkReadWindow(offset: unknown, length: unknown, size: number, where: { remote: string; path: string }): void {
  const refuse = (detail: string): never => {
    throw new RemoteError({ code: "INVALID_ARGUMENT", remote: where.remote, operation: "read", path: where.path, detail });
  };
  if (!isOffset(offset)) refuse(`offset must be a non-negative integer, got ${String(offset)}`);
  if (!isOffset(length)) refuse(`length must be a non-negative integer, got ${String(length)}`);
  if ((offset as number) + (length as number) > size) {
    refuse(`bytes ${String(offset)}..${(offset as number) + (length as number) - 1} lie past the end of the ${size}-byte file`);
  }
}

/** The error a closed random-access handle answers with. */
export function closedHandleError(where: { remote: string; path: string }): RemoteError {
  return new RemoteError({
    code: "INVALID_ARGUMENT",
    remote: where.remote,
    operation: "read",
    path: where.path,
    detail: "the random-access handle is closed",
  });
}
