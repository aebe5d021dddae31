/** How the dashboard writes sizes, speeds, durations and times. */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** `1536` → `"1.5 KiB"`; null or undefined → `"–"`. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "–";
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${bytes < 0 ? "-" : ""}${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** Bytes per second as `"12.3 MiB/s"`. */
export function formatSpeed(bytesPerSecond: number | null | undefined): string {
  return bytesPerSecond === null || bytesPerSecond === undefined ? "–" : `${formatBytes(bytesPerSecond)}/s`;
}

/** What a run moved, as `formatBytes` writes it; `"–"` when it moved nothing (a verify or a health check copies no data). */
export function formatTransferred(bytes: number | null | undefined): string {
  return bytes ? formatBytes(bytes) : "–";
}

/**
 * The average speed of `bytes` moved in `seconds`, as `formatSpeed` writes it; `"–"` when nothing moved or no time
 * passed (a run that has not started), where a speed would mean nothing.
 */
export function formatAverageSpeed(bytes: number | null | undefined, seconds: number | null | undefined): string {
  if (!bytes || !seconds || seconds <= 0 || !Number.isFinite(bytes / seconds)) return "–";
  return formatSpeed(bytes / seconds);
}

/** `3725` → `"1 h 2 min"`, `42` → `"42 s"`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60 ? `${s % 60} s` : ""}`.trim();
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h < 48 ? `${h} h${m ? ` ${m} min` : ""}` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** Seconds between two ISO times (now when `end` is null). */
export function secondsBetween(start: string | null | undefined, end: string | null | undefined, now = Date.now()): number | null {
  if (!start) return null;
  return ((end ? Date.parse(end) : now) - Date.parse(start)) / 1000;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** An ISO time in the browser's locale and time zone. */
export function formatDateTime(iso: string | null | undefined): string {
  return iso ? dateTime.format(new Date(iso)) : "–";
}

/** A date in a given IANA time zone, with the zone's abbreviation. */
export function formatInZone(date: Date, timeZone: string): string {
  // dateStyle/timeStyle cannot be combined with timeZoneName: spell the parts out.
  return new Intl.DateTimeFormat(undefined, {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZone,
    timeZoneName: "short",
  }).format(date);
}

/** "in 3 h", "5 min ago" */
export function formatRelative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const seconds = (Date.parse(iso) - now) / 1000;
  const text = formatDuration(Math.abs(seconds));
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** Human words for the API's enums: `ROLLING_SNAPSHOT` → `"Rolling snapshot"`. */
export function humanize(value: string): string {
  const words = value.toLowerCase().replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}
