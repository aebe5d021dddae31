/**
 * The VMs pages in a real Chromium against a real Cairn server with the lab, after real runs: a delta backup and a rolling
 * snapshot of web-ext4, a disaster-recovery replica of db-data. The VMs page lists every lab VM with its protection (web-ext4
 * protected with its last restore point and both jobs, the replica as a replica and not "unprotected", win-fat never backed
 * up, scratch excluded); search and the protection filter narrow it; a row opens the VM's page, which lists its restore
 * points on the remote and on its pool's SR, and whose Restore link restores the snapshot through to a successful run.
 * Screenshots at 1280 and 390 px go to test-results/dashboard-vms/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-vms";

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

describe.skipIf(skipReason)("the VMs pages: inventory, protection, and a VM's restore points everywhere", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  let webUuid = "";
  let replicaName = "";

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture();
    const web = f.vm("web-ext4");
    const db = f.vm("db-data");
    webUuid = web.uuid;
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    const second = srs.find((sr) => sr.name === "Second storage")!;

    const delta = await f.createJob({
      name: "vms-delta",
      mode: "DELTA",
      selection: { vmUuids: [web.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(delta.id, delta.schedules[0].id));
    const rolling = await f.createJob({
      name: "vms-rolling",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [web.uuid] },
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(rolling.id, rolling.schedules[0].id));
    const dr = await f.createJob({
      name: "vms-dr",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [db.uuid] },
      srUuids: [second.uuid],
      schedules: [{ cron: "0 4 * * *", copyRetention: 1 }],
    });
    expectSuccess(await f.runToEnd(dr.id, dr.schedules[0].id));

    // The inventory follows the pool's events (debounced): wait until it knows the replica the DR run made.
    replicaName = await eventually("the replica in the VM inventory", async () => {
      const { vmProtection } = await f.gql<{ vmProtection: { vm: { name: string; role: string } }[] }>(
        "{ vmProtection { vm { name role } } }",
      );
      const replica = vmProtection.find((item) => item.vm.role === "REPLICA");
      expect(replica).toBeDefined();
      return replica!.vm.name;
    });

    browser = await launchBrowser({ baseURL: f.server.url });
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
    ),
  );

  it("lists every lab VM with its role and protection: backed up, replicated, never backed up, replica, excluded", async () => {
    const { page } = browser;
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "VMs" }).click();
    await page.getByRole("heading", { level: 1, name: "VMs" }).waitFor(WAIT);

    const web = page.locator('tr[data-vm="web-ext4"]');
    await web.waitFor(WAIT);
    await expect(web.getAttribute("data-protection")).resolves.toBe("PROTECTED");
    await expect(web.locator('td[data-label="Role"]').textContent()).resolves.toBe("VM");
    await expect(web.locator('td[data-label="Power"]').textContent()).resolves.toContain("Running");
    const last = (await web.locator("[data-last-restore-point]").textContent()) ?? "";
    expect(last).toMatch(/ago/);
    expect(last).not.toContain("never backed up");
    const coveredBy = web.locator('td[data-label="Covered by"]');
    await coveredBy.getByRole("link", { name: "vms-delta" }).waitFor();
    await coveredBy.getByRole("link", { name: "vms-rolling" }).waitFor();
    await expect(web.locator('td[data-label="Protection"]').textContent()).resolves.toContain("target every 24 h");

    const db = page.locator('tr[data-vm="db-data"]');
    await expect(db.getAttribute("data-protection")).resolves.toBe("PROTECTED");
    await expect(db.locator('td[data-label="Replicas"]').textContent()).resolves.toBe("1");

    const replica = page.locator(`tr[data-vm="${replicaName}"]`);
    await expect(replica.getAttribute("data-role")).resolves.toBe("REPLICA");
    await expect(replica.locator('td[data-label="Role"]').textContent()).resolves.toBe("Replica");
    await expect(replica.getAttribute("data-protection")).resolves.toBe("NOT_EXPECTED");
    await expect(replica.locator('td[data-label="Protection"]').textContent()).resolves.not.toContain("Unprotected");

    const winFat = page.locator('tr[data-vm="win-fat"]');
    await expect(winFat.getAttribute("data-protection")).resolves.toBe("UNPROTECTED");
    await expect(winFat.locator("[data-last-restore-point]").textContent()).resolves.toBe("never backed up");
    await expect(winFat.locator('td[data-label="Covered by"]').textContent()).resolves.toBe("no job");

    const scratch = page.locator('tr[data-vm="scratch"]');
    await expect(scratch.locator('td[data-label="Role"]').textContent()).resolves.toBe("Excluded");
    await expect(scratch.getAttribute("data-protection")).resolves.toBe("NOT_EXPECTED");
    await shootBoth(page, "01-vms");
  });

  it("narrows the list by name and by protection state, and keeps the filters in the URL", async () => {
    const { page } = browser;
    const rows = page.locator("tr[data-vm]");
    const total = await rows.count();
    expect(total).toBeGreaterThanOrEqual(5);

    await page.getByLabel("Search", { exact: true }).fill("web");
    await expect.poll(() => rows.count(), WAIT).toBe(1);
    await expect(rows.first().getAttribute("data-vm")).resolves.toBe("web-ext4");
    await expect.poll(() => new URL(page.url()).searchParams.get("q"), WAIT).toBe("web");

    await page.getByLabel("Search", { exact: true }).fill("nothing-by-this-name");
    await page.getByText("No VM matches these filters.").waitFor(WAIT);
    await page.getByRole("button", { name: "clear the filters" }).click();
    await expect.poll(() => rows.count(), WAIT).toBe(total);

    await page.getByLabel("Protection", { exact: true }).selectOption("UNPROTECTED");
    await expect.poll(() => rows.count(), WAIT).toBe(1);
    await expect(rows.first().getAttribute("data-vm")).resolves.toBe("win-fat");
    await expect.poll(() => new URL(page.url()).searchParams.get("state"), WAIT).toBe("UNPROTECTED");
    await shootBoth(page, "02-vms-unprotected");

    await page.getByLabel("Protection", { exact: true }).selectOption("NOT_EXPECTED");
    await expect.poll(() => rows.count(), WAIT).toBe(2);
    const names = await rows.evaluateAll((elements) => elements.map((element) => element.getAttribute("data-vm")));
    expect(names.sort()).toEqual([replicaName, "scratch"].sort());

    const poolId = await page.locator("#vm-pool option").nth(1).getAttribute("value");
    await page.getByLabel("Pool", { exact: true }).selectOption(poolId!);
    await page.getByLabel("Protection", { exact: true }).selectOption("");
    await expect.poll(() => rows.count(), WAIT).toBe(total);
    await page.getByRole("button", { name: "Clear filters" }).click();
    await expect.poll(() => new URL(page.url()).search, WAIT).toBe("");
  });

  it("opens a VM's page from its row, with its jobs and its restore points on the remote and on its pool's SR", async () => {
    const { page } = browser;
    await page.locator('tr[data-vm="web-ext4"]').getByRole("link", { name: "web-ext4" }).click();
    await page.waitForURL(`**/vms/${webUuid}`);
    await page.getByRole("heading", { level: 1, name: "web-ext4" }).waitFor(WAIT);
    await expect(page.locator("[data-vm-role]").textContent()).resolves.toBe("VM");
    await expect(page.locator("[data-vm-protection]").getAttribute("data-vm-protection")).resolves.toBe("PROTECTED");
    const jobs = page.locator("[data-vm-jobs]");
    await jobs.getByRole("link", { name: "vms-delta" }).waitFor();
    await jobs.getByRole("link", { name: "vms-rolling" }).waitFor();

    const points = page.locator("tr[data-restore-point]");
    await points.first().waitFor(WAIT);
    await expect(points.count()).resolves.toBe(2);
    // Newest first: the rolling snapshot ran after the delta backup.
    await expect(points.nth(0).getAttribute("data-kind")).resolves.toBe("SNAPSHOT");
    await expect(points.nth(1).getAttribute("data-kind")).resolves.toBe("VHD_CHAIN");
    await expect(points.nth(1).locator("[data-where]").textContent()).resolves.toBe("remote local");
    await expect(points.nth(0).locator("[data-where]").textContent()).resolves.toMatch(/^SR Local storage \(pool .+\)$/);
    await shootBoth(page, "03-vm-page");
  });

  it("restores the snapshot from its Restore link, through to a successful restore run", async () => {
    const { page } = browser;
    const snapshot = page.locator('tr[data-restore-point][data-kind="SNAPSHOT"]');
    const pointId = await snapshot.getAttribute("data-restore-point");
    await snapshot.getByRole("link", { name: /^Restore web-ext4 from / }).click();
    await page.waitForURL(`**/vms/${webUuid}/restore/${pointId}`);
    await page.getByRole("heading", { level: 1, name: "Restore web-ext4" }).waitFor(WAIT);
    await expect(page.locator("[data-chosen-point]").getAttribute("data-chosen-point")).resolves.toBe(pointId);
    // A snapshot is copied inside its own pool: that pool is chosen already.
    await expect.poll(() => page.getByLabel("Pool", { exact: true }).inputValue(), WAIT).not.toBe("");
    const sr = await page.locator("#restore-sr option", { hasText: "Local storage" }).getAttribute("value");
    await page.getByLabel("SR", { exact: true }).selectOption(sr!);
    await page.getByLabel("Name", { exact: true }).fill("web-ext4 from its snapshot");
    await shootBoth(page, "04-vm-restore");
    await page.getByRole("button", { name: "Restore", exact: true }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, WAIT);
    const runId = page.url().split("/").pop()!;
    expectSuccess(await f.waitForEnd(runId));
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
