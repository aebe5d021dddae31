/**
 * File-level restore in a real Chromium against a real Cairn server with the lab, on delta restore points (two runs of a
 * DELTA job: the second point is a chain of two VHDs). db-data's disk is first rewritten as a GPT disk of three
 * partitions built with the real tools: Linux swap (unreadable), FAT with a folder, ext4 with a folder. The browser shows
 * the partitions with their size and file system (the swap one explained, not hidden), opens the first readable one by
 * itself, follows a choice of the other, walks into a folder and back by the breadcrumb (its root named by the
 * partition), and a listing the server refuses clears the old entries and says what failed with a way back. web-ext4's
 * single partition needs no choice. Screenshots at 1280 and 390 px go to test-results/dashboard-file-restore/.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium", "sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-file-restore";
const SECTOR = 512;
const MIB = 1024 * 1024;

const TOOL_PATH = { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` };
const tool = (command: string, args: string[], input?: string) =>
  execFileSync(command, args, { env: TOOL_PATH, input, stdio: ["pipe", "ignore", "pipe"] });

/**
 * A GPT disk image of `size` bytes (the lab's 8 MiB disks will do): 1 "swap" (1 MiB of Linux swap, its signature only),
 * 2 "boot" (2 MiB of FAT holding /DOCS/HELLO.TXT), 3 "root" (the rest, ext4 holding /home/bob/todo.txt).
 */
async function threePartitionImage(work: string, size: number): Promise<Buffer> {
  const image = join(work, "disk.img");
  const handle = await open(image, "w");
  try {
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
  const swapStart = 2048;
  const swapSectors = MIB / SECTOR;
  const bootStart = swapStart + swapSectors;
  const bootSectors = (2 * MIB) / SECTOR;
  const rootStart = bootStart + bootSectors;
  const rootSectors = Math.floor((size / SECTOR - rootStart - 34) / 2048) * 2048;
  tool(
    "sfdisk",
    ["-q", image],
    [
      "label: gpt",
      `start=${swapStart}, size=${swapSectors}, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name="swap"`,
      `start=${bootStart}, size=${bootSectors}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="boot"`,
      `start=${rootStart}, size=${rootSectors}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"`,
      "",
    ].join("\n"),
  );
  tool("mkfs.vfat", ["-n", "BOOT", `--offset=${bootStart}`, image, String((bootSectors * SECTOR) / 1024)]);
  await mkdir(join(work, "fat", "DOCS"), { recursive: true });
  await writeFile(join(work, "fat", "DOCS", "HELLO.TXT"), "Hello from the boot partition.\r\n");
  tool("mcopy", ["-s", "-Q", "-i", `${image}@@${bootStart * SECTOR}`, join(work, "fat", "DOCS"), "::/"]);
  await mkdir(join(work, "ext", "home", "bob"), { recursive: true });
  await writeFile(join(work, "ext", "home", "bob", "todo.txt"), "Restore a file.\n");
  tool("mkfs.ext4", [
    "-q",
    "-F",
    "-E",
    `offset=${rootStart * SECTOR},root_owner=0:0`,
    "-d",
    join(work, "ext"),
    image,
    `${(rootSectors * SECTOR) / 1024}k`,
  ]);
  const bytes = await readFile(image);
  // Linux swap is recognised by its signature at the end of its first page (what mkswap writes there).
  bytes.write("SWAPSPACE2", swapStart * SECTOR + 4086, "latin1");
  return bytes;
}

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

describe.skipIf(skipReason)("file-level restore: partitions, breadcrumbs and failed listings in the dashboard", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  let work = "";
  const latest: Record<string, { id: string; vmUuid: string; chainLength: number }> = {};

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture();
    const web = f.vm("web-ext4");
    const db = f.vm("db-data");

    work = await mkdtemp(join(tmpdir(), "cairn-file-restore-"));
    const [dbDisk] = f.diskRefs(db.ref);
    const size = Number((f.xapi.getObjectByRef(dbDisk!) as unknown as { virtual_size: number }).virtual_size);
    const image = await threePartitionImage(work, size);
    for (let offset = 0; offset < size; offset += 8 * MIB) {
      await f.xapi.call("lab.write_vdi", dbDisk, offset, image.subarray(offset, Math.min(size, offset + 8 * MIB)).toString("base64"));
    }

    const job = await f.createJob({
      name: "files-delta",
      mode: "DELTA",
      selection: { vmUuids: [web.uuid, db.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    for (const point of await f.restorePoints(job.id, "VHD_CHAIN")) {
      // Newest first: the first one seen of each VM is its delta.
      latest[point.vmName] ??= point;
    }
    expect(latest["db-data"]!.chainLength).toBe(2);
    expect(latest["web-ext4"]!.chainLength).toBe(2);

    browser = await launchBrowser({ baseURL: f.server.url, viewport: { width: 1280, height: 900 } });
    const { page } = browser;
    await page.goto("/signin");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Signed in as admin").waitFor(WAIT);
  }, 600_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => f?.stop(),
      () => (work ? rm(work, { recursive: true, force: true }) : undefined),
    ),
  );

  async function openFiles(page: Page, vmName: string) {
    const point = latest[vmName]!;
    await page.goto(`/vms/${point.vmUuid}/restore/${point.id}`);
    await page.getByRole("radio", { name: /Files and folders/ }).check();
  }

  it("lists every partition through the API with its size and file system, and why one cannot be browsed", async () => {
    const { restorePointPartitions } = await f.gql<{ restorePointPartitions: Record<string, unknown>[] }>(
      "query($id: ID!) { restorePointPartitions(id: $id, disk: 0) { number name size fileSystem automatic reason } }",
      { id: latest["db-data"]!.id },
    );
    expect(restorePointPartitions).toEqual([
      { number: 1, name: "swap", size: MIB, fileSystem: "swap", automatic: false, reason: "Linux swap space: it holds no files" },
      { number: 2, name: "boot", size: 2 * MIB, fileSystem: expect.stringMatching(/^FAT(12|16)$/), automatic: true, reason: null },
      { number: 3, name: "root", size: expect.any(Number), fileSystem: "ext4", automatic: false, reason: null },
    ]);
  });

  it("shows a disk's partitions with size and file system, opens the first readable one, and follows a choice", async () => {
    const { page } = browser;
    await openFiles(page, "db-data");
    const partitions = page.getByRole("group", { name: "Partition" });
    await partitions.waitFor(WAIT);
    const swap = partitions.locator('[data-partition="1"]');
    await expect(swap.textContent()).resolves.toMatch(
      /Partition 1 “swap”\s*1\.00 MiB · swap: cannot be browsed, Linux swap space: it holds no files\./,
    );
    await expect(swap.getByRole("radio").isDisabled()).resolves.toBe(true);
    await expect(partitions.locator('[data-partition="2"]').textContent()).resolves.toMatch(/Partition 2 “boot”\s*2\.00 MiB · FAT1[26]/);
    await expect(partitions.locator('[data-partition="3"]').textContent()).resolves.toMatch(/Partition 3 “root”\s*[\d.]+ MiB · ext4/);
    // The first readable partition is open by itself.
    await expect(page.getByRole("radio", { name: /Partition 2/ }).isChecked()).resolves.toBe(true);
    await page.getByRole("table", { name: "Files in /" }).waitFor(WAIT);
    await page.locator('tr[data-file-entry="/DOCS"]').waitFor();
    await shootBoth(page, "01-partitions-fat");

    await page.getByRole("radio", { name: /Partition 3/ }).check();
    await page.locator('tr[data-file-entry="/home"]').waitFor(WAIT);
    await expect(page.locator('tr[data-file-entry="/DOCS"]').count()).resolves.toBe(0);
    await page.getByRole("button", { name: "Open folder home" }).click();
    await page.getByRole("button", { name: "Open folder bob" }).click();
    await page.getByRole("table", { name: "Files in /home/bob" }).waitFor(WAIT);
    await page.locator('tr[data-file-entry="/home/bob/todo.txt"]').waitFor();
    const crumbs = page.getByRole("navigation", { name: "Folder" });
    await expect(crumbs.getByRole("listitem").allTextContents()).resolves.toEqual(["Partition 3 “root” /", "home", "bob"]);
    await shootBoth(page, "02-breadcrumb-deep");

    await crumbs.getByRole("button", { name: "home", exact: true }).click();
    await page.getByRole("table", { name: "Files in /home" }).waitFor(WAIT);
    await crumbs.getByRole("button", { name: /^Partition 3/ }).click();
    await page.getByRole("table", { name: "Files in /" }).waitFor(WAIT);
    await page.locator('tr[data-file-entry="/home"]').waitFor();
  });

  it("clears the old listing when the next one fails, says which folder and why, and leads back", async () => {
    const { page } = browser;
    await openFiles(page, "db-data");
    await page.getByRole("radio", { name: /Partition 3/ }).check();
    await page.locator('tr[data-file-entry="/home"]').waitFor(WAIT);
    // The folder is gone by the time it is read: the server is asked for a path that does not exist and refuses it.
    await page.route("**/graphql", async (route) => {
      const body = route.request().postDataJSON() as { operationName?: string; variables?: { path?: string } };
      if (body.operationName === "BrowseRestorePoint" && body.variables?.path === "/home") {
        await route.continue({ postData: JSON.stringify({ ...body, variables: { ...body.variables, path: "/home/gone" } }) });
        return;
      }
      await route.continue();
    });
    await page.getByRole("button", { name: "Open folder home" }).click();
    const failure = page.locator("[data-listing-error]");
    await failure.waitFor(WAIT);
    await expect(failure.textContent()).resolves.toMatch(
      /Cairn could not list the folder \/home on partition 3 “root”: it is not in this backup\./,
    );
    // Nothing of the folder shown before stays under the new path.
    await expect(page.locator("tr[data-file-entry]").count()).resolves.toBe(0);
    await expect(page.getByRole("table").count()).resolves.toBe(0);
    await expect(page.getByRole("navigation", { name: "Folder" }).getByRole("listitem").allTextContents()).resolves.toEqual([
      "Partition 3 “root” /",
      "home",
    ]);
    await shootBoth(page, "03-listing-failed");

    await page.unroute("**/graphql");
    await failure.getByRole("button", { name: "Back to the top of Partition 3 “root”" }).click();
    await page.getByRole("table", { name: "Files in /" }).waitFor(WAIT);
    await page.locator('tr[data-file-entry="/home"]').waitFor();
    await expect(failure.count()).resolves.toBe(0);
  });

  it("chooses a disk's only partition by itself", async () => {
    const { page } = browser;
    await openFiles(page, "web-ext4");
    await page.getByRole("table", { name: "Files in /" }).waitFor(WAIT);
    await expect(page.getByRole("group", { name: "Partition" }).count()).resolves.toBe(0);
    await expect(page.locator('[data-partition="1"]').textContent()).resolves.toMatch(
      /Partition 1\s*[\d.]+ MiB · ext4\s*the only partition of this disk/,
    );
    await page.locator('tr[data-file-entry="/README.txt"]').waitFor();
    await shootBoth(page, "04-single-partition");
  });

  it("ran every page above under its Content-Security-Policy without a violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
