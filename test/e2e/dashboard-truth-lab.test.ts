/**
 * What the run page of a restore, a replication job's summary and the Remotes page say, in a real Chromium against a real
 * Cairn server with the lab (so SRs have names, as a connected pool shows them): the restore is titled by its source (VM and
 * time) with its target SR and pool by name and the new VM; an operator's read-only summary of a DR job lists its target SRs,
 * not "Remotes: none"; a remote's "Used by backups" is what its restore points take, not the file system's usage. History is
 * seeded straight into Postgres. Screenshots at 1280 and 390 px go to test-results/dashboard-truth/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-truth";
const SOURCE_VM = "ffffffff-0000-4000-8000-000000000001";

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

describe.skipIf(skipReason)("restore runs, replication jobs and remotes say what they are", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  const ids: Record<string, string> = {};
  let sr = { uuid: "", name: "" };
  let poolName = "";

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn({ lab: true });
    const token = await server.login();
    const { data } = await server.graphql<{
      srs: { uuid: string; name: string; contentType: string; pool: { id: string; name: string } }[];
    }>(`{ srs { uuid name contentType pool { id name } } }`, {}, token);
    const target = data!.srs.find((candidate) => candidate.contentType !== "iso")!;
    sr = { uuid: target.uuid, name: target.name };
    poolName = target.pool.name;
    const db = createPrismaClient(server.database.url);
    try {
      const remote = await db.remote.create({
        data: { name: "nas", kind: "LOCAL", location: "/srv/nas", usedBytes: 900n * 1024n ** 3n, freeBytes: 100n * 1024n ** 3n },
      });
      const taken = new Date("2026-12-01T02:00:00Z");
      const backup = await db.run.create({
        data: { trigger: "SCHEDULE", status: "SUCCESS", createdAt: taken, startedAt: taken, endedAt: taken },
      });
      ids.backup = backup.id;
      const point = await db.restorePoint.create({
        data: {
          kind: "XVA",
          vmUuid: SOURCE_VM,
          vmName: "billing",
          timestamp: taken,
          sizeBytes: 3n * 1024n ** 3n,
          remoteId: remote.id,
          path: "a.json",
          runId: backup.id,
        },
      });
      await db.restorePoint.create({
        data: {
          kind: "XVA",
          vmUuid: SOURCE_VM,
          vmName: "billing",
          timestamp: new Date("2026-12-02T02:00:00Z"),
          sizeBytes: 1024n ** 3n,
          remoteId: remote.id,
          path: "b.json",
        },
      });
      const restore = await db.run.create({
        data: {
          kind: "RESTORE",
          trigger: "MANUAL",
          status: "SUCCESS",
          startedAt: new Date(Date.now() - 120_000),
          endedAt: new Date(Date.now() - 60_000),
          params: { restorePointId: point.id, poolId: target.pool.id, srUuid: sr.uuid, name: null, start: false, requestedBy: null },
        },
      });
      ids.restore = restore.id;
      await db.task.create({
        data: {
          runId: restore.id,
          position: 0,
          kind: "restore",
          name: "restore billing",
          status: "SUCCESS",
          progress: 1,
          endedAt: new Date(),
          result: { vmUuid: "ffffffff-0000-4000-8000-00000000abcd", name: "billing (restored 2026-12-03 09:00 UTC)", srUuid: sr.uuid },
        },
      });
      ids.dr = (
        await db.job.create({
          data: {
            name: "dr-copy",
            mode: "DISASTER_RECOVERY",
            selection: { vmUuids: [SOURCE_VM] },
            srUuids: [sr.uuid, "39540000-0000-4000-8000-000000000000"],
            settings: {},
          },
        })
      ).id;
    } finally {
      await db.$disconnect();
    }
    await createUser(server, "olivia", "OPERATOR");
    browser = await launchBrowser({ baseURL: server.url });
    const { page } = browser;
    await page.goto("/signin");
    await page.getByLabel("Username").fill("olivia");
    await page.getByLabel("Password").fill("olivia-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Signed in as olivia").waitFor(WAIT);
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("titles a restore run by what it restored, with the target SR and pool by name and the new VM", async () => {
    const { page } = browser;
    await page.goto(`/runs/${ids.restore}`);
    await page.getByRole("heading", { level: 1, name: /^Restore of billing \(/ }).waitFor(WAIT);
    const line = page.locator("[data-restore]");
    await line.getByText(sr.name, { exact: true }).waitFor();
    await expect(line.getByRole("link", { name: poolName }).getAttribute("href")).resolves.toBe("/pools");
    await expect(line.getByRole("link", { name: "the backup run" }).getAttribute("href")).resolves.toBe(`/runs/${ids.backup}`);
    await expect(line.locator("[data-restored-vm]").textContent()).resolves.toBe("billing (restored 2026-12-03 09:00 UTC)");
    await shootBoth(page, "05-restore-run");
  });

  it("lists a replication job's target SRs in its read-only summary, not 'Remotes: none'", async () => {
    const { page } = browser;
    await page.goto(`/jobs/${ids.dr}`);
    const srs = page.locator("[data-job-srs]");
    await srs.waitFor(WAIT);
    await expect(srs.textContent()).resolves.toContain(`${sr.name} (${poolName})`);
    await expect(srs.textContent()).resolves.toContain("SR 39540000… (in no connected pool)");
    await expect(page.getByText("Remotes: none").count()).resolves.toBe(0);
    await shootBoth(page, "06-dr-job-summary");
  });

  it("shows what the backups take on a remote, and the free space apart", async () => {
    const { page } = browser;
    await page.goto("/remotes");
    const row = page.locator('tr[data-remote="nas"]');
    const used = row.locator("[data-backup-bytes]");
    await used.waitFor(WAIT);
    await expect(used.textContent()).resolves.toBe("4.00 GiB");
    // 900 GiB of the file system are used, mostly by something else: not shown as Cairn's.
    await expect(row.locator('td[data-label="Free"]').textContent()).resolves.toBe("100 GiB");
    await shootBoth(page, "07-remotes-used");
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
