/**
 * A pool's page in a real Chromium against a real Cairn server with the lab: the Pools page's row opens it; it shows the lab
 * pool's master host with its version, its SRs with their free space and whether they are shared, its VMs (each linking
 * to its VM page) and the connection history; a pool Cairn cannot connect to shows its error and what to do. Screenshots at
 * 1280 and 390 px go to test-results/dashboard-pool-page/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-pool-page";

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

async function signIn(page: Page, username: string, password: string) {
  await page.goto("/signin");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText(`Signed in as ${username}`).waitFor(WAIT);
}

describe.skipIf(skipReason)("a pool's page", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let labPool = { id: "", name: "" };
  let brokenPoolId = "";

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn({ lab: true });
    const db = createPrismaClient(server.database.url);
    try {
      labPool = await db.pool.findFirstOrThrow({ select: { id: true, name: true } });
      // Written after the server started, this pool is held by no connection: the API shows its row's status as it is,
      // as for a pool whose master went away.
      brokenPoolId = (
        await db.pool.create({
          data: {
            name: "branch-office",
            url: "https://192.0.2.2",
            username: "root",
            passwordSealed: "x",
            status: "ERROR",
            lastError: "connect ECONNREFUSED 192.0.2.2:443",
          },
        })
      ).id;
    } finally {
      await db.$disconnect();
    }
    await createUser(server, "vera", "VIEWER");
    browser = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("opens from the Pools page and shows the lab pool's hosts, SRs with free space, VMs and connection history", async () => {
    const { page } = browser;
    await signIn(page, "admin", ADMIN_PASSWORD);
    await page.goto("/pools");
    await page.locator(`tr[data-pool="${labPool.name}"]`).getByRole("link", { name: labPool.name }).click();
    await page.waitForURL(`**/pools/${labPool.id}`, WAIT);
    await page.getByRole("heading", { level: 1, name: labPool.name }).waitFor(WAIT);
    await expect(page.locator("[data-pool-status]").getAttribute("data-pool-status")).resolves.toBe("CONNECTED");
    await expect(page.locator("[data-pool-advice]").count()).resolves.toBe(0);

    const host = page.locator(`tr[data-host="${labPool.name}-host"]`);
    await host.getByText("XCP-ng 8.3.0").waitFor();
    await host.getByText("master").waitFor();
    await host.getByText("127.0.0.1").waitFor();

    const local = page.locator('tr[data-sr="Local storage"]');
    await expect(local.locator("[data-sr-free]").textContent()).resolves.toMatch(/ free of 2\.00 TiB \(\d+ %\)$/);
    await expect(local.locator("[data-sr-shared]").textContent()).resolves.toBe("One host only");
    await expect(local.getByRole("meter", { name: "Space used on Local storage" }).count()).resolves.toBe(1);
    await expect(page.locator('tr[data-sr="ISO library"] [data-sr-shared]').textContent()).resolves.toBe("Shared by the hosts");

    const vmLinks = page.locator("tr[data-vm] a");
    expect(await vmLinks.count()).toBeGreaterThan(0);
    for (const href of await vmLinks.evaluateAll((links) => links.map((link) => link.getAttribute("href")))) {
      expect(href).toMatch(/^\/vms\/[0-9a-f-]{36}$/);
    }

    const connected = page.locator('tr[data-connection-change="CONNECTED"]');
    await connected.first().waitFor();
    await connected.first().getByText("the pool answered").waitFor();
    await shootBoth(page, "01-lab-pool");

    // A VM's row leads to its page.
    const firstVm = vmLinks.first();
    const vmName = (await firstVm.textContent())!;
    await firstVm.click();
    await page.getByRole("heading", { level: 1, name: vmName }).waitFor(WAIT);
  });

  it("shows a pool Cairn cannot connect to with its error and what to do", async () => {
    const { page } = browser;
    await page.goto(`/pools/${brokenPoolId}`);
    await page.getByRole("heading", { level: 1, name: "branch-office" }).waitFor(WAIT);
    await expect(page.locator("[data-pool-status]").getAttribute("data-pool-status")).resolves.toBe("ERROR");
    const advice = page.locator("[data-pool-advice]");
    await advice.getByText("Cairn cannot connect to branch-office.").waitFor();
    await advice.getByText(/Check that the pool's master \(https:\/\/192\.0\.2\.2\) is up and reachable from Cairn/).waitFor();
    await advice.getByText(/If its address, user name or password changed, edit the pool on the Pools page\./).waitFor();
    await expect(advice.locator("[data-pool-error]").textContent()).resolves.toBe("Cairn's last error: connect ECONNREFUSED 192.0.2.2:443");
    await page.getByText("Cairn shows the hosts of branch-office while it is connected to it.").waitFor();
    await page.getByText("No change of the connection recorded.").waitFor();
    await shootBoth(page, "02-pool-in-error");
  });

  it("tells a viewer to ask an administrator, and says when no pool has the id", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(page, "vera", "vera-password");
    await page.goto(`/pools/${brokenPoolId}`);
    await page
      .locator("[data-pool-advice]")
      .getByText(/ask an administrator to edit the pool on the Pools page/)
      .waitFor(WAIT);
    await page.goto("/pools/00000000-0000-4000-8000-000000000000");
    await page
      .getByRole("alert")
      .getByText(/Cairn has no pool with id 00000000-0000-4000-8000-000000000000/)
      .waitFor(WAIT);
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
