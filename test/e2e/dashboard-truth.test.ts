/**
 * The dashboard says only what is true (issue 16, "Wrong or misleading today"), in a real Chromium against a real Cairn
 * server, with history seeded straight into Postgres: the Overview counts only the VMs Cairn should protect (replicas,
 * restored and health-check VMs are its own products) and shows a pool in ERROR with what to do; the Logs search finds
 * runs by kind and by a task's error; error messages read as sentences with links, internals folded. Every page is
 * checked at 1280 and 390 px, with no sideways scroll; screenshots go to test-results/dashboard-truth/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-truth";

const vmUuid = (n: number) => `dddddddd-0000-4000-8000-${String(n).padStart(12, "0")}`;
const WEB = vmUuid(1);
const DB = vmUuid(2);
/** What a transfer that ran out of space says (a RemoteError's text), carried up by its VM's task. */
const NO_SPACE =
  'NO_SPACE: could not write "xo-vm-backups/db/20261201T020000Z.xva" on nas: ENOSPC: no space left on device; free some space on the remote or lower the retention';

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

describe.skipIf(skipReason)("the dashboard says only what is true", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn();
    const db = createPrismaClient(server.database.url);
    try {
      // Pools written after the server started are held by no connection: the API shows their rows' status as they are.
      const prod = await db.pool.create({
        data: { name: "prod", url: "http://192.0.2.1", username: "root", passwordSealed: "x", status: "CONNECTED" },
      });
      await db.pool.create({
        data: {
          name: "branch-office",
          url: "https://192.0.2.2",
          username: "root",
          passwordSealed: "x",
          status: "ERROR",
          lastError: "connect ECONNREFUSED 192.0.2.2:443",
        },
      });
      const vm = (n: number, name: string, tags: string[]) => ({ uuid: vmUuid(n), poolId: prod.id, name, tags, powerState: "Running" });
      await db.vmInventory.createMany({
        data: [
          vm(1, "web", []),
          vm(2, "db", []),
          vm(3, "web [DR]", ["cairn:replica"]),
          vm(4, "db [CR]", ["cairn:replica"]),
          vm(5, "web restored", ["cairn:restored"]),
          vm(6, "hc web", ["cairn:health-check", "cairn:no-bak"]),
          vm(7, "scratch", ["cairn:no-bak"]),
        ],
      });
      const remote = await db.remote.create({ data: { name: "nas", kind: "LOCAL", location: "/srv/nas" } });
      await db.restorePoint.create({
        data: {
          kind: "XVA",
          vmUuid: WEB,
          vmName: "web",
          timestamp: new Date(Date.now() - 2 * 3600_000),
          sizeBytes: 1024n ** 3n,
          remoteId: remote.id,
          path: "web.json",
        },
      });
      const job = (name: string, vm: string) =>
        db.job.create({
          data: {
            name,
            mode: "FULL",
            selection: { vmUuids: [vm] },
            srUuids: [],
            settings: {},
            remotes: { create: [{ remoteId: remote.id }] },
          },
        });
      const nightly = await job("nightly", WEB);
      const weekly = await job("weekly", DB);
      ids.nightly = nightly.id;
      const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000);
      // A run another Cairn process holds (its heartbeat fresh for an hour): "Run now" is refused while it lasts.
      ids.running = (
        await db.run.create({
          data: {
            jobId: nightly.id,
            trigger: "SCHEDULE",
            status: "RUNNING",
            createdAt: ago(5),
            startedAt: ago(5),
            workerId: "elsewhere/1",
            heartbeatAt: new Date(Date.now() + 3600_000),
            vmUuids: [WEB],
            vmsTotal: 1,
          },
        })
      ).id;
      ids.failed = (
        await db.run.create({
          data: {
            jobId: weekly.id,
            trigger: "SCHEDULE",
            status: "FAILURE",
            createdAt: ago(60),
            startedAt: ago(60),
            endedAt: ago(58),
            error: "1 of 1 VMs failed: db.",
            vmUuids: [DB],
            vmsTotal: 1,
            vmsFailed: 1,
          },
        })
      ).id;
      const vmTask = await db.task.create({
        data: {
          runId: ids.failed,
          position: 0,
          kind: "vm",
          name: "db",
          status: "FAILURE",
          message: NO_SPACE,
          vmUuid: DB,
          startedAt: ago(60),
        },
      });
      await db.task.create({
        data: {
          runId: ids.failed,
          parentId: vmTask.id,
          position: 1,
          kind: "transfer",
          name: "Export to nas",
          status: "FAILURE",
          message: NO_SPACE,
          startedAt: ago(60),
        },
      });
      ids.restore = (
        await db.run.create({
          data: { kind: "RESTORE", trigger: "MANUAL", status: "SUCCESS", createdAt: ago(30), startedAt: ago(30), endedAt: ago(29) },
        })
      ).id;
    } finally {
      await db.$disconnect();
    }
    browser = await launchBrowser({ baseURL: server.url });
    const { page } = browser;
    await page.goto("/signin");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("link", { name: "Signed in as admin (ADMIN)" }).waitFor(WAIT);
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("says what each VM is through the API: role from Cairn's tags", async () => {
    const result = await server.graphql<{ vmProtection: { vm: { name: string; role: string }; protected: boolean }[] }>(
      `{ vmProtection { protected vm { name role } } }`,
      {},
      await server.login(),
    );
    expect(result.errors).toBeUndefined();
    const roles = Object.fromEntries(result.data!.vmProtection.map((p) => [p.vm.name, p.vm.role]));
    expect(roles).toEqual({
      web: "VM",
      db: "VM",
      "web [DR]": "REPLICA",
      "db [CR]": "REPLICA",
      "web restored": "RESTORED",
      "hc web": "HEALTH_CHECK",
      scratch: "EXCLUDED",
    });
  });

  it("warns on the Overview only about VMs to protect, and shows the pool in ERROR with what to do", async () => {
    const { page } = browser;
    await page.goto("/");
    await page.getByRole("heading", { name: "1 VM without a good restore point in 24 hours" }).waitFor(WAIT);
    const warning = page.locator(".unprotected li");
    await expect(warning.allTextContents()).resolves.toEqual([expect.stringMatching(/^db\b[\s\S]*never backed up/)]);
    await page.getByText("VMs protected (24 h)").waitFor();
    await expect(page.locator(".totals .card").filter({ hasText: "VMs protected" }).locator(".figure").textContent()).resolves.toBe("1/2");
    await page.locator("[data-products]").filter({ hasText: "2 replicas (db [CR], web [DR])" }).waitFor();
    await page.locator("[data-products]").filter({ hasText: "1 restored VM (web restored)" }).waitFor();
    await page.locator("[data-products]").filter({ hasText: "1 health-check VM (hc web)" }).waitFor();
    await page.getByText("Not backed up on purpose").filter({ hasText: "scratch" }).waitFor();

    await page.getByRole("heading", { name: /1 pool is not connected/ }).waitFor();
    const down = page.locator('[data-pool-down="branch-office"]');
    await down.getByText(/Cairn cannot connect\. Check the pool's address, user name and password/).waitFor();
    await expect(down.getByRole("link", { name: "Open Pools" }).getAttribute("href")).resolves.toBe("/pools");
    // The connection error's own words are folded away, not in the sentence.
    await expect(down.locator("details").getAttribute("open")).resolves.toBeNull();
    await expect(page.locator('[data-pool-down="prod"]').count()).resolves.toBe(0);
    await shootBoth(page, "01-overview");
  });

  it("finds runs in the Logs by a task's error and by kind", async () => {
    const { page } = browser;
    await page.goto("/logs");
    await page.getByLabel("Search").fill("NO_SPACE");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.getByText("1 run match").waitFor(WAIT);
    await page.locator(`tr[data-run="${ids.failed}"]`).waitFor();
    await shootBoth(page, "02-logs-search-task-error");

    await page.getByLabel("Search").fill("restore");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.locator(`tr[data-run="${ids.restore}"]`).waitFor(WAIT);
    await expect(page.locator("tr[data-run]").count()).resolves.toBe(1);
  });

  it("says a task's error once on the run page, where it happened", async () => {
    const { page } = browser;
    await page.goto(`/runs/${ids.failed}`);
    await page.getByRole("alert").filter({ hasText: "1 of 1 VMs failed: db." }).waitFor(WAIT);
    await page.locator('li[data-task-kind="transfer"]').waitFor();
    // The VM's task carries its transfer's error up: it is said on the transfer only.
    await expect(page.getByText(NO_SPACE).count()).resolves.toBe(1);
    await expect(page.locator('li[data-task-kind="transfer"] > p.error').textContent()).resolves.toBe(NO_SPACE);
    await shootBoth(page, "03-run-error-once");
  });

  it("refuses Run now on a running job by its name, with a link to the run in progress", async () => {
    const { page } = browser;
    await page.goto(`/jobs/${ids.nightly}`);
    await page.getByRole("button", { name: "Run now" }).click();
    const alert = page.getByRole("alert").filter({ hasText: 'Job "nightly" is already running' });
    await alert.waitFor(WAIT);
    await expect(alert.textContent()).resolves.not.toContain(ids.running);
    await expect(alert.getByRole("link", { name: "Open the run in progress" }).getAttribute("href")).resolves.toBe(`/runs/${ids.running}`);
    await expect(alert.locator("details").textContent()).resolves.toContain("CONFLICT");
    await shootBoth(page, "04-run-now-conflict");
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
