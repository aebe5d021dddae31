/** Small checks shared by the services' input validation; each throws an InputError naming the field. */
import { InputError } from "../errors.js";

export function requiredText(value: unknown, field: string, max = 200): string {
  if (typeof value !== "string" || value.trim().length === 0) throw new InputError(field, "is required");
  const text = value.trim();
  if (text.length > max) throw new InputError(field, `must be at most ${max} characters (got ${text.length})`);
  if (/[\u0000-\u001f]/.test(text)) throw new InputError(field, "must not contain control characters");
  return text;
}

export function optionalText(value: unknown, field: string, max = 200): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  return requiredText(value, field, max);
}

export function integerInRange(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InputError(field, `must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
  return value;
}

export function httpUrl(value: unknown, field: string): string {
  const text = requiredText(value, field, 500);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError(field, "must be a URL such as https://pool-master.example.net");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new InputError(field, "must start with http:// or https://");
  if (url.username || url.password) throw new InputError(field, "must not carry credentials: use username and password");
  return url.toString().replace(/\/$/, "");
}

/** Postgres can neither store nor compare a NUL character: refuse it as input rather than fail in the database. */
export function withoutNul<T extends string | null | undefined>(value: T, field: string): T {
  if (typeof value === "string" && value.includes("\u0000")) throw new InputError(field, "must not contain a NUL character");
  return value;
}

/** Maps Prisma's unique-constraint violation on `name` to a clear error. */
export function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string })?.code === "P2002";
}
