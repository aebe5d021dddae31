import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import type { ApiClient } from "$lib/api/client.js";
import { ApiError } from "$lib/api/errors.js";
import FileBrowser from "$lib/components/FileBrowser.svelte";
import { breadcrumbs, parsePartition, pathsToDownload, sortEntries } from "$lib/file-browser.js";

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

interface Call {
  operation: string;
  variables: Record<string, any>;
}

/**
 * An ApiClient answering browseRestorePoint from TREE and restoreFiles with a link, as the server does; `fail` makes
 * an operation reject with an ApiError instead.
 */
function fakeClient(fail: Partial<Record<string, ApiError>> = {}) {
  const calls: Call[] = [];
  const client: ApiClient = {
    async request(document, variables) {
      const definition = document.definitions[0] as { name?: { value: string } };
      const operation = definition.name!.value;
      calls.push({ operation, variables: variables as Record<string, any> });
      if (fail[operation]) throw fail[operation];
      const vars = variables as Record<string, any>;
      if (operation === "BrowseRestorePoint") {
        const entries = TREE[vars.path];
        if (!entries) throw new ApiError(`path: ${vars.path} does not exist in this file system`, "NOT_FOUND");
        return { browseRestorePoint: entries } as never;
      }
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
  ],
};

function setup(options: { fail?: Partial<Record<string, ApiError>>; canDownload?: boolean; kind?: string } = {}) {
  const { client, calls } = fakeClient(options.fail);
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

  it("reads the partition field: empty is automatic, digits a number, anything else invalid", () => {
    expect(parsePartition(" ")).toBeNull();
    expect(parsePartition("0")).toBe(0);
    expect(parsePartition("2")).toBe(2);
    expect(parsePartition("-1")).toBe("invalid");
    expect(parsePartition("a")).toBe("invalid");
  });
});

describe("FileBrowser", () => {
  it("lists the root of the first disk, automatic partition, folders first", async () => {
    const { browses } = setup();
    await screen.findByRole("table", { name: "Files in /" });
    expect(browses()).toEqual([{ id: point.id, disk: 0, partition: null, path: "/" }]);
    expect(rowNames()).toEqual(["/etc", "/home", "/lost+found", "/var", "/README.txt"]);
    expect(screen.getByRole("navigation", { name: "Folder" }).textContent?.trim()).toBe("/");
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
    await fireEvent.click(crumbs.getByRole("button", { name: "/" }));
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
      input: { restorePointId: point.id, disk: 0, partition: null, paths: ["/README.txt", "/etc/hostname", "/home"], format: "ZIP" },
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

  it("shows the API's message when a folder cannot be read, with a way back to the root", async () => {
    setup();
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder var" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("path: /var does not exist in this file system");
    await fireEvent.click(within(alert).getByRole("button", { name: "Back to the root folder" }));
    await screen.findByRole("table", { name: "Files in /" });
  });

  it("shows the API's explanation for a full (XVA) backup", async () => {
    const message =
      "File-level restore needs a delta (VHD) backup; restore point x is a full backup (XVA): restore the VM instead, or use a DELTA job.";
    setup({ kind: "XVA", fail: { BrowseRestorePoint: new ApiError(message, "BAD_USER_INPUT") } });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain(message);
    expect(alert.classList.contains("notice")).toBe(true);
    expect(screen.queryByRole("table")).toBeNull();
    expect(screen.queryByRole("button", { name: "Download" })).toBeNull();
    expect(screen.queryByLabelText("Partition")).toBeNull();
  });

  it("asks for another partition or disk, starting over at the root with an empty selection", async () => {
    const { browses } = setup();
    await fireEvent.click(await screen.findByRole("button", { name: "Open folder etc" }));
    await fireEvent.click(await screen.findByRole("checkbox", { name: "Select hostname" }));
    const partition = screen.getByLabelText("Partition");
    await fireEvent.input(partition, { target: { value: "x" } });
    await fireEvent.change(partition);
    expect(screen.getByRole("alert").textContent).toMatch(/Type a partition number/);
    expect(partition.getAttribute("aria-invalid")).toBe("true");
    await fireEvent.input(partition, { target: { value: "2" } });
    await fireEvent.change(partition);
    await screen.findByRole("table", { name: "Files in /" });
    expect(screen.queryByText(/selected:/)).toBeNull();
    await fireEvent.change(screen.getByLabelText("Disk"), { target: { value: "1" } });
    await waitFor(() => expect(browses().at(-1)).toEqual({ id: point.id, disk: 1, partition: 2, path: "/" }));
    expect(browses().map((v) => [v.disk, v.partition, v.path])).toEqual([
      [0, null, "/"],
      [0, null, "/etc"],
      [0, 2, "/"],
      [1, 2, "/"],
    ]);
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
