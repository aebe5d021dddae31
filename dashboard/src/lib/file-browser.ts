/** Pure helpers of the file browser (FileBrowser.svelte): folder paths, breadcrumbs, listing order. */

/** One step of the breadcrumbs: the folder's name and its absolute path. */
export interface Crumb {
  label: string;
  path: string;
}

/** "/home/alice" -> [/, home, alice] with their paths; the root is labelled "/". */
export function breadcrumbs(path: string): Crumb[] {
  const parts = path.split("/").filter(Boolean);
  return [{ label: "/", path: "/" }, ...parts.map((label, i) => ({ label, path: `/${parts.slice(0, i + 1).join("/")}` }))];
}

/** Folders first, then everything else, each by name (as a file manager lists them). */
export function sortEntries<T extends { name: string; type: string }>(entries: readonly T[]): T[] {
  const rank = (type: string) => (type === "DIRECTORY" ? 0 : 1);
  return [...entries].sort((a, b) => rank(a.type) - rank(b.type) || a.name.localeCompare(b.name));
}

/**
 * The paths to send to restoreFiles: the selection without those inside a selected folder (the folder brings them
 * along), sorted.
 */
export function pathsToDownload(selected: Iterable<string>): string[] {
  const all = [...new Set(selected)].sort();
  return all.filter((path) => !all.some((other) => other !== path && (other === "/" || path.startsWith(`${other}/`))));
}

/** "Partition" as typed: empty means automatic (null), else a whole number (0: the whole disk). */
export function parsePartition(text: string): number | null | "invalid" {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  return /^\d+$/.test(trimmed) ? Number(trimmed) : "invalid";
}
