/**
 * Maps the API's BAD_USER_INPUT errors to form fields: the server names the field in `extensions.field`
 * (`input.schedules.0.cron`) and starts its message with it (`input.schedules.0.cron: not a valid cron...`).
 */
import { ApiError, ErrorCode, errorMessage } from "./api/errors.js";

export interface FieldErrors {
  /** Messages by field path without the leading `input.` (`schedules.0.cron`, `name`). */
  byField: Record<string, string>;
  /** What cannot be shown at a field (other codes, or a field the form does not have). */
  general: string | null;
}

/** Splits an error into field messages and a general one. `known` lists the form's field paths. */
export function mapFieldErrors(error: unknown, known?: (field: string) => boolean): FieldErrors {
  if (!(error instanceof ApiError) || error.code !== ErrorCode.BadUserInput) {
    return { byField: {}, general: errorMessage(error) };
  }
  const byField: Record<string, string> = {};
  const general: string[] = [];
  const given = error.errors.length > 0 ? error.errors : [{ message: error.message, extensions: { code: error.code } }];
  // One error may refuse several fields at once (extensions.fields: { field, message }[]): each goes to its field.
  const entries = given.flatMap((entry) => {
    const fields = entry.extensions?.fields;
    if (!Array.isArray(fields)) return [entry];
    return fields.flatMap((item: unknown) => {
      const { field, message } = (item ?? {}) as { field?: unknown; message?: unknown };
      return typeof field === "string" && typeof message === "string" ? [{ message, extensions: { code: error.code, field } }] : [];
    });
  });
  for (const entry of entries) {
    const raw = entry.extensions?.field;
    if (typeof raw !== "string" || !raw) {
      general.push(entry.message);
      continue;
    }
    const field = raw.replace(/^input\.?/, "") || "input";
    const message = entry.message.startsWith(`${raw}: `) ? entry.message.slice(raw.length + 2) : entry.message;
    if (known && !known(field)) general.push(entry.message);
    else byField[field] = capitalize(message);
  }
  return { byField, general: general.length > 0 ? general.join(" ") : null };
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The value at a dotted path (`schedules.0.cron`) of an input object. */
export function valueAt(input: unknown, path: string): unknown {
  let value = input;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/**
 * The errors still worth showing: those whose field has not changed since the refused input was sent. A field the
 * user has edited loses its message until the next save says otherwise.
 */
export function stillValid(errors: Record<string, string>, sent: unknown, current: unknown): Record<string, string> {
  const same = (field: string) => JSON.stringify(valueAt(sent, field)) === JSON.stringify(valueAt(current, field));
  return Object.fromEntries(Object.entries(errors).filter(([field]) => same(field)));
}
