/**
 * The Reports page and the Logs page's export in a real Chromium against a real Cairn server (its dashboard build, under
 * its Content-Security-Policy): history seeded straight into Postgres, then the storage trend chart, the RPO table (met and
 * missed) and a CSV export downloaded from the Logs page. Screenshots go to test-results/dashboard-reports/.
 */
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { launchBrowser, screenshot, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-reports";
const WEB = "cccccccc-0000-4000-8000-000000000001";
const DB = "cccccccc-0000-4000-8000-000000000002";

describe.skipIf(skipReason)("the Reports page and the run export in the dashboard of a real Cairn server", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn();
    const db = createPrismaClient(server.database.url);
    try {
      const pool = await db.pool.create({ data: { name: "reports pool", url: "http://192.0.2.1", username: "root", passwordSealed: "x" } });
      await db.vmInventory.createMany({
        data: [
          { uuid: WEB, poolId: pool.id, name: "web", tags: [], powerState: "Running" },
          { uuid: DB, poolId: pool.id, name: "db", tags: [], powerState: "Running" },
        ],
      });
      const remote = await db.remote.create({ data: { name: "nas", kind: "LOCAL", location: "/srv/nas" } });
      const job = await db.job.create({
        data: {
          name: "nightly",
          mode: "FULL",
          selection: { vmUuids: [WEB, DB] },
          srUuids: [],
          settings: {},
          schedules: { create: [{ cron: "0 2 * * *" }] },
          remotes: { create: [{ remoteId: remote.id }] },
        },
      });
      const now = Date.now();
      const hours = (h: number) => new Date(now - h * 3600_000);
      // web: a good restore point every 24 h for 8 days, the newest 2 h ago: daily target met. db: the newest is 3 days old.
      const points = [
        ...Array.from({ length: 8 }, (_, i) => ({ vm: WEB, name: "web", at: hours(2 + 24 * i), size: 1024 ** 3 })),
        { vm: DB, name: "db", at: hours(72), size: 512 * 1024 ** 2 },
        { vm: DB, name: "db", at: hours(96), size: 512 * 1024 ** 2 },
      ];
      for (const [i, p] of points.entries()) {
        await db.restorePoint.create({
          data: {
            kind: "XVA",
            vmUuid: p.vm,
            vmName: p.name,
            timestamp: p.at,
            sizeBytes: BigInt(p.size),
            remoteId: remote.id,
            path: `p${i}.json`,
            jobId: job.id,
          },
        });
      }
      await db.run.create({
        data: {
          jobId: job.id,
          trigger: "SCHEDULE",
          status: "FAILURE",
          createdAt: hours(5),
          startedAt: hours(5),
          endedAt: hours(4.9),
          error: "=1+1 went wrong",
        },
      });
    } finally {
      await db.$disconnect();
    }
    browser = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("shows the storage trend and the RPO of each VM, reached from the nav", async () => {
    const { page } = browser;
    await page.goto("/signin");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("link", { name: "Signed in as admin (ADMIN)" }).waitFor(WAIT);
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Reports" }).click();
    await page.waitForURL("**/reports");

    await page.getByRole("img", { name: "Bytes held per remote, per day" }).waitFor(WAIT);
    await page.getByRole("img", { name: "Bytes held per VM, per day" }).waitFor(WAIT);
    // The remote holds all ten points now: 8 × 1 GiB of web, 2 × 512 MiB of db.
    await page.locator("figcaption li").filter({ hasText: "nas" }).filter({ hasText: "9.00 GiB" }).waitFor(WAIT);

    const web = page.locator('tr[data-rpo-vm="web"]');
    const db = page.locator('tr[data-rpo-vm="db"]');
    await web.getByText("✓ met").waitFor(WAIT);
    await db.getByText("✗ missed").waitFor(WAIT);
    await expect(web.locator('td[data-label="Target"]').textContent()).resolves.toBe("24 h");
    await page.locator("[data-rpo-summary]").filter({ hasText: "1 met · 1 missed · 0 without a schedule" }).waitFor(WAIT);
    await screenshot(page, `${SHOTS}/01-reports`);
  });

  it("downloads the filtered runs as CSV from the Logs page, formulas defused", async () => {
    const { page } = browser;
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Logs" }).click();
    await page.waitForURL("**/logs");
    await page.locator("tr[data-run]").first().waitFor(WAIT);
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export CSV" }).click()]);
    expect(download.suggestedFilename()).toMatch(/^cairn-runs-\d{8}T\d{6}\.csv$/);
    const lines = (await readFile((await download.path())!, "utf8")).split("\r\n");
    expect(lines[0]).toMatch(/^id,kind,status,trigger,jobId,jobName,/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/,nightly,.*,'=1\+1 went wrong$/);
    await screenshot(page, `${SHOTS}/02-logs-export`);
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
