/** Pure helpers of the file browser (FileBrowser.svelte): partitions, folder paths, breadcrumbs, listing order, failures. */

/** One step of the breadcrumbs: the folder's name and its absolute path. */
export interface Crumb {
  label: string;
  path: string;
}

/** "/home/alice" -> [/, home, alice] with their paths; the root is labelled `rootLabel` ("/" unless told). */
export function breadcrumbs(path: string, rootLabel = "/"): Crumb[] {
  const parts = path.split("/").filter(Boolean);
  return [{ label: rootLabel, path: "/" }, ...parts.map((label, i) => ({ label, path: `/${parts.slice(0, i + 1).join("/")}` }))];
}

/** The folder above `path` ("/" stays "/"). */
export function parentOf(path: string): string {
  const parts = path.split("/").filter(Boolean);
  return `/${parts.slice(0, -1).join("/")}`;
}

/** A partition as restorePointPartitions describes it (only what the browser reads). */
export interface PartitionFacts {
  number: number;
  name: string;
  fileSystem: string | null;
  automatic: boolean;
  reason: string | null;
}

/** "Partition 1", "Partition 2 “boot”", or "Whole disk" for number 0 (a disk with no partition table). */
export function partitionLabel(partition: Pick<PartitionFacts, "number" | "name">): string {
  if (partition.number === 0) return "Whole disk";
  return partition.name ? `Partition ${partition.number} “${partition.name}”` : `Partition ${partition.number}`;
}

/**
 * The partition to open before anyone chooses: the one the API opens by itself (`automatic`), else the first readable one;
 * null when none can be browsed.
 */
export function firstChoice(partitions: readonly PartitionFacts[]): number | null {
  const readable = partitions.filter((p) => p.reason === null);
  return (readable.find((p) => p.automatic) ?? readable[0])?.number ?? null;
}

/** What went wrong with a folder's listing, in words, and which ways out make sense. */
export interface ListingProblem {
  headline: string;
  /** The server's own sentence, when it adds something to the headline. */
  detail: string | null;
  /** Whether trying the same folder again may work (the remote or the network was away). */
  retry: boolean;
}

/** `where`: the file system's name as people see it ("partition 1"). */
export function listingProblem(error: { code: string; message: string }, path: string, where: string): ListingProblem {
  const folder = path === "/" ? `the top folder of ${where}` : `the folder ${path} on ${where}`;
  if (error.code === "NOT_FOUND")
    return { headline: `Cairn could not list ${folder}: it is not in this backup.`, detail: error.message, retry: false };
  if (error.code === "BAD_USER_INPUT") return { headline: `Cairn could not open ${folder}.`, detail: error.message, retry: false };
  return { headline: `Cairn could not read ${folder} from the backup.`, detail: error.message, retry: true };
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
