import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import type { ApiClient } from "$lib/api/client.js";
import { ApiError } from "$lib/api/errors.js";
import FileBrowser from "$lib/components/FileBrowser.svelte";
import { breadcrumbs, firstChoice, listingProblem, parentOf, partitionLabel, pathsToDownload, sortEntries } from "$lib/file-browser.js";

afterEach(cleanup);

type Entry = { name: string; path: string; type: string; size: number; modifiedAt: string | null };
const file = (path: string, size = 10): Entry => ({
  name: path.split("/").pop()!,
  path,
  type: "FILE",
  size,
  modifiedAt: "2026-11-20T08:00:00Z",
});
const dir = (path: string): Entry => ({
  name: path.split("/").pop()!,
  path,
  type: "DIRECTORY",
  size: 4096,
  modifiedAt: "2026-11-20T08:00:00Z",
});

/** The lab's ext4 file system (server/lab/known-files.ts), as browseRestorePoint lists it. */
const TREE: Record<string, Entry[]> = {
  "/": [file("/README.txt", 64), dir("/etc"), dir("/home"), dir("/var"), dir("/lost+found")],
  "/etc": [file("/etc/os-release", 42), file("/etc/hostname", 9)],
  "/home": [dir("/home/alice")],
  "/home/alice": [file("/home/alice/notes.txt", 48)],
  "/lost+found": [],
};

type Part = {
  number: number;
  name: string;
  size: number;
  type: string;
  fileSystem: string | null;
  automatic: boolean;
  reason: string | null;
};
const part = (number: number, fileSystem: string | null, extra: Partial<Part> = {}): Part => ({
  number,
  name: "",
  size: 32 << 20,
  type: "83",
  fileSystem,
  automatic: false,
  reason: null,
  ...extra,
});

/** restorePointPartitions per disk: the lab's single ext4 partition; a GPT disk of swap, FAT and ext4; an unreadable disk. */
const PARTITIONS: Part[][] = [
  [part(1, "ext4", { size: 63 << 20, automatic: true })],
  [
    part(1, "swap", { name: "swap", size: 1 << 20, reason: "Linux swap space: it holds no files" }),
    part(2, "FAT32", { name: "boot", automatic: true }),
    part(3, "ext4", { name: "root" }),
  ],
  [part(0, null, { type: "", reason: "no file system Cairn recognises (ext2/3/4 and FAT are supported)" })],
];

interface Call {
  operation: string;
  variables: Record<string, any>;
}

/**
 * An ApiClient answering restorePointPartitions from PARTITIONS, browseRestorePoint from TREE (whatever the disk and
 * partition) and restoreFiles with a link, as the server does; `fail` makes an operation reject with an ApiError instead,
 * `failOnce` the first listing of a path.
 */
function fakeClient(fail: Partial<Record<string, ApiError>> = {}, failOnce: Record<string, ApiError> = {}) {
  const calls: Call[] = [];
  const client: ApiClient = {
    async request(document, variables) {
      const definition = document.definitions[0] as { name?: { value: string } };
      const operation = definition.name!.value;
      calls.push({ operation, variables: variables as Record<string, any> });
      if (fail[operation]) throw fail[operation];
      const vars = variables as Record<string, any>;
      if (operation === "BrowseRestorePoint") {
        const once = failOnce[vars.path];
        if (once) {
          delete failOnce[vars.path];
          throw once;
        }
        const entries = TREE[vars.path];
        if (!entries) throw new ApiError(`path: ${vars.path} does not exist in this file system`, "NOT_FOUND");
        return { browseRestorePoint: entries } as never;
      }
      if (operation === "RestorePointPartitions") return { restorePointPartitions: PARTITIONS[vars.disk] ?? [] } as never;
      if (operation === "RestoreFiles") return { restoreFiles: { url: "/download/t0k3n", expiresAt: "2026-11-26T10:05:00Z" } } as never;
      throw new Error(`unexpected operation ${operation}`);
    },
  };
  return { client, calls };
}

const point = {
  id: "9d2f6f4e-3b7a-4c55-9e0e-2f1a8c3b7d10",
  kind: "VHD_CHAIN",
  vmName: "web-ext4",
  disks: [
    { name: "root", virtualSize: 64 << 20 },
    { name: "data", virtualSize: 32 << 20 },
    { name: "raw", virtualSize: 32 << 20 },
  ],
};

function setup(
  options: { fail?: Partial<Record<string, ApiError>>; failOnce?: Record<string, ApiError>; canDownload?: boolean; kind?: string } = {},
) {
  const { client, calls } = fakeClient(options.fail, { ...options.failOnce });
  const downloads: string[] = [];
  render(FileBrowser, {
    client,
    point: { ...point, kind: options.kind ?? point.kind },
    canDownload: options.canDownload ?? true,
    startDownload: (url: string) => downloads.push(url),
  });
  const browses = () => calls.filter((c) => c.operation === "BrowseRestorePoint").map((c) => c.variables);
  return { calls, downloads, browses };
}

const rowNames = () =>
  screen
    .getAllByRole("row")
    .slice(1)
    .map((row) => row.getAttribute("data-file-entry"));

describe("file browser helpers", () => {
  it("builds breadcrumbs from the root", () => {
    expect(breadcrumbs("/")).toEqual([{ label: "/", path: "/" }]);
    expect(breadcrumbs("/home/alice")).toEqual([
      { label: "/", path: "/" },
      { label: "home", path: "/home" },
      { label: "alice", path: "/home/alice" },
    ]);
  });

  it("lists folders first, then files, each by name", () => {
    expect(sortEntries(TREE["/"]!).map((e) => e.name)).toEqual(["etc", "home", "lost+found", "var", "README.txt"]);
  });

  it("sends a selected folder without the files selected inside it", () => {
    expect(pathsToDownload(["/home/alice/notes.txt", "/etc/hostname", "/home", "/homework"])).toEqual([
      "/etc/hostname",
      "/home",
      "/homework",
    ]);
    expect(pathsToDownload(["/", "/etc"])).toEqual(["/"]);
  });

  it("names the root after the partition, and finds a folder's parent", () => {
    expect(breadcrumbs("/etc", "Partition 1 /")[0]).toEqual({ label: "Partition 1 /", path: "/" });
    expect([parentOf("/home/alice"), parentOf("/home"), parentOf("/")]).toEqual(["/home", "/", "/"]);
  });

  it("names partitions and opens the API's automatic one first, else the first readable, else none", () => {
    expect(PARTITIONS[1]!.map(partitionLabel)).toEqual(["Partition 1 “swap”", "Partition 2 “boot”", "Partition 3 “root”"]);
    expect(partitionLabel(PARTITIONS[2]![0]!)).toBe("Whole disk");
    expect(firstChoice(PARTITIONS[1]!)).toBe(2);
    expect(firstChoice(PARTITIONS[1]!.map((p) => ({ ...p, automatic: false })))).toBe(2);
    expect(firstChoice(PARTITIONS[2]!)).toBeNull();
  });

  it("says which folder could not be listed, and whether trying again may help", () => {
    expect(listingProblem({ code: "NOT_FOUND", message: "path: /var does not exist" }, "/var", "partition 1")).toEqual({
      headline: "Cairn could not list the folder /var on partition 1: it is not in this backup.",
      detail: "path: /var does not exist",
      retry: false,
    });
    expect(listingProblem({ code: "UNAVAILABLE", message: "the remote local is unreachable" }, "/", "partition 1")).toEqual({
      headline: "Cairn could not read the top folder of partition 1 from the backup.",
      detail: "the remote local is unreachable",
      retry: true,
    });
  });
});

describe("FileBrowser", () => {
  it("lists the root of the first disk's only partition, chosen by itself, folders first", async () => {
    const { browses } = setup();
    await screen.findByRole("table", { name: "Files in /" });
    expect(browses()).toEqual([{ id: point.id, disk: 0, partition: 1, path: "/" }]);
    expect(rowNames()).toEqual(["/etc", "/home", "/lost+found", "/var", "/README.txt"]);
    expect(screen.getByRole("navigation", { name: "Folder" }).textContent?.trim()).toBe("Partition 1 /");
    expect(screen.queryByRole("group", { name: "Partition" })).toBeNull();
    expect(document.querySelector('[data-partition="1"]')?.textContent).toMatch(/Partition 1\s*63\.0 MiB · ext4\s*the only partition/);
  });

  it("opens folders and walks back through the breadcrumbs", async () => {
    const { browses } = setup();
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder home" }));
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder alice" }));
    await screen.findByRole("table", { name: "Files in /home/alice" });
    expect(rowNames()).toEqual(["/home/alice/notes.txt"]);
    const crumbs = within(screen.getByRole("navigation", { name: "Folder" }));
    expect(crumbs.getByText("alice").getAttribute("aria-current")).toBe("location");
    await fireEvent.click(crumbs.getByRole("button", { name: "home" }));
    await screen.findByRole("table", { name: "Files in /home" });
    await fireEvent.click(crumbs.getByRole("button", { name: "Partition 1 /" }));
    await screen.findByRole("table", { name: "Files in /" });
    expect(browses().map((v) => v.path)).toEqual(["/", "/home", "/home/alice", "/home", "/"]);
  });

  it("keeps the selection across folders and downloads it as zip, folder and files together", async () => {
    const { calls, downloads } = setup();
    await fireEvent.click(await screen.findByRole("checkbox", { name: "Select README.txt" }));
    await fireEvent.click(screen.getByRole("checkbox", { name: "Select home" }));
    await fireEvent.click(screen.getByRole("button", { name: "Open folder etc" }));
    await fireEvent.click(await screen.findByRole("checkbox", { name: "Select hostname" }));
    expect(screen.getByText("3 selected:")).toBeTruthy();
    await fireEvent.click(screen.getByRole("radio", { name: /zip/ }));
    await fireEvent.click(screen.getByRole("button", { name: "Download" }));
    await screen.findByRole("status");
    expect(calls.find((c) => c.operation === "RestoreFiles")?.variables).toEqual({
      input: { restorePointId: point.id, disk: 0, partition: 1, paths: ["/README.txt", "/etc/hostname", "/home"], format: "ZIP" },
    });
    expect(downloads).toEqual(["/download/t0k3n"]);
    expect(screen.getByRole("status").textContent).toMatch(/3 items as zip has started/);
  });

  it("selects and unselects everything in a folder at once; Download waits for a selection", async () => {
    setup();
    const all = await screen.findByRole("checkbox", { name: "Select everything in this folder" });
    const download = screen.getByRole("button", { name: "Download" }) as HTMLButtonElement;
    expect(download.disabled).toBe(true);
    await fireEvent.click(all);
    expect(screen.getByText("5 selected:")).toBeTruthy();
    expect(download.disabled).toBe(false);
    await fireEvent.click(all);
    expect(screen.queryByText(/selected:/)).toBeNull();
    expect(download.disabled).toBe(true);
  });

  it("says so when a folder is empty, and goes up from there", async () => {
    setup();
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder lost+found" }));
    await screen.findByText(/This folder is empty/);
    await fireEvent.click(screen.getByRole("button", { name: "Up one folder" }));
    await screen.findByRole("table", { name: "Files in /" });
  });

  it("clears the old listing when a folder cannot be read, says which one, and leads back to the top", async () => {
    setup();
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder var" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("Cairn could not list the folder /var on partition 1: it is not in this backup.");
    expect(alert.textContent).toContain("path: /var does not exist in this file system");
    expect(screen.queryByRole("table")).toBeNull();
    expect(document.querySelectorAll("tr[data-file-entry]")).toHaveLength(0);
    expect(within(alert).queryByRole("button", { name: "Try again" })).toBeNull();
    await fireEvent.click(within(alert).getByRole("button", { name: "Back to the top of Partition 1" }));
    await screen.findByRole("table", { name: "Files in /" });
  });

  it("offers to try again when the backup could not be read, and goes up one folder", async () => {
    const { browses } = setup({ failOnce: { "/home/alice": new ApiError("the remote local is unreachable", "UNAVAILABLE") } });
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder home" }));
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder alice" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("Cairn could not read the folder /home/alice on partition 1 from the backup.");
    expect(screen.queryByRole("table")).toBeNull();
    await fireEvent.click(within(alert).getByRole("button", { name: "Try again" }));
    await screen.findByRole("table", { name: "Files in /home/alice" });
    expect(browses().map((v) => v.path)).toEqual(["/", "/home", "/home/alice", "/home/alice"]);
    const crumbs = within(screen.getByRole("navigation", { name: "Folder" }));
    await fireEvent.click(crumbs.getByRole("button", { name: "home" }));
    await screen.findByRole("table", { name: "Files in /home" });
  });

  it("goes up one folder from a folder that cannot be read", async () => {
    setup({ failOnce: { "/home/alice": new ApiError("path: /home/alice is not a folder", "BAD_USER_INPUT") } });
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder home" }));
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder alice" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("Cairn could not open the folder /home/alice on partition 1.");
    await fireEvent.click(within(alert).getByRole("button", { name: "Up to /home" }));
    await screen.findByRole("table", { name: "Files in /home" });
  });

  it("shows the API's explanation for a full (XVA) backup", async () => {
    const message =
      "File-level restore needs a delta (VHD) backup; restore point x is a full backup (XVA): restore the VM instead, or use a DELTA job.";
    const refusal = new ApiError(message, "BAD_USER_INPUT");
    setup({ kind: "XVA", fail: { RestorePointPartitions: refusal, BrowseRestorePoint: refusal } });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain(message);
    expect(alert.classList.contains("notice")).toBe(true);
    expect(screen.queryByRole("table")).toBeNull();
    expect(screen.queryByRole("button", { name: "Download" })).toBeNull();
    expect(screen.queryByLabelText("Partition")).toBeNull();
  });

  it("lists another disk's partitions, unreadable ones explained, and starts over at the root of the one chosen", async () => {
    const { browses } = setup();
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder etc" }));
    await fireEvent.click(await screen.findByRole("checkbox", { name: "Select hostname" }));
    await fireEvent.change(screen.getByLabelText("Disk"), { target: { value: "1" } });
    const group = await screen.findByRole("group", { name: "Partition" });
    const swap = within(group).getByRole("radio", { name: /Partition 1 “swap”/ }) as HTMLInputElement;
    expect(swap.disabled).toBe(true);
    expect(group.querySelector('[data-partition="1"]')?.textContent).toMatch(/cannot be browsed, Linux swap space: it holds no files\./);
    expect((within(group).getByRole("radio", { name: /Partition 2 “boot”/ }) as HTMLInputElement).checked).toBe(true);
    await screen.findByRole("table", { name: "Files in /" });
    expect(screen.queryByText(/selected:/)).toBeNull();
    await fireEvent.click(within(group).getByRole("radio", { name: /Partition 3 “root”/ }));
    await waitFor(() => expect(browses().at(-1)).toEqual({ id: point.id, disk: 1, partition: 3, path: "/" }));
    expect(screen.getByRole("navigation", { name: "Folder" }).textContent?.trim()).toBe("Partition 3 “root” /");
    expect(browses().map((v) => [v.disk, v.partition, v.path])).toEqual([
      [0, 1, "/"],
      [0, 1, "/etc"],
      [1, 2, "/"],
      [1, 3, "/"],
    ]);
  });

  it("explains a disk with nothing Cairn can read, and lists nothing", async () => {
    const { browses } = setup();
    await screen.findByRole("table", { name: "Files in /" });
    await fireEvent.change(screen.getByLabelText("Disk"), { target: { value: "2" } });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("Cairn cannot browse this disk: no file system Cairn recognises (ext2/3/4 and FAT are supported).");
    expect(document.querySelector('[data-partition="0"]')?.textContent).toMatch(
      /Whole disk\s*32\.0 MiB · no file system recognised: cannot be browsed, no file system Cairn recognises/,
    );
    expect(screen.queryByRole("table")).toBeNull();
    expect(screen.queryByRole("button", { name: "Download" })).toBeNull();
    expect(browses().map((v) => v.disk)).toEqual([0]);
  });

  it("browses the API's automatic partition when the partitions cannot be listed", async () => {
    const { browses } = setup({ fail: { RestorePointPartitions: new ApiError("the remote local is unreachable", "UNAVAILABLE") } });
    await screen.findByRole("table", { name: "Files in /" });
    expect(screen.getByText(/The partitions of this disk could not be listed \(the remote local is unreachable\)/)).toBeTruthy();
    expect(browses()).toEqual([{ id: point.id, disk: 0, partition: null, path: "/" }]);
  });

  it("shows restoreFiles' refusal and starts no download", async () => {
    const { downloads } = setup({ fail: { RestoreFiles: new ApiError("input.paths.0: /README.txt does not exist", "NOT_FOUND") } });
    await fireEvent.click(await screen.findByRole("checkbox", { name: "Select README.txt" }));
    await fireEvent.click(screen.getByRole("button", { name: "Download" }));
    expect((await screen.findByRole("alert")).textContent).toBe("input.paths.0: /README.txt does not exist");
    expect(downloads).toEqual([]);
  });

  it("lets a viewer browse without checkboxes or a Download button", async () => {
    setup({ canDownload: false });
    await screen.findByRole("table", { name: "Files in /" });
    expect(screen.queryAllByRole("checkbox")).toEqual([]);
    expect(screen.queryByRole("button", { name: "Download" })).toBeNull();
    expect(screen.getByText(/Viewers can browse files but not download them/)).toBeTruthy();
  });
});
