/**
 * Metadata backups through the dashboard, against a real Cairn server with the lab: the job form creates a METADATA job
 * (mode Metadata, the pool picker, "Include Cairn's configuration", the local remote), Run now reaches SUCCESS; the
 * Metadata page lists the pool's backup and the configuration's (no sideways scroll at 390 px); a VM renamed on the pool
 * since, "Restore onto <pool>" asks first, says what it does, and the pool is back as it was. Screenshots go to
 * test-results/dashboard-metadata-backups/.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Xapi } from "xen-api";
import {
  launchBrowser,
  screenshot,
  shootAtBothWidths,
  signInThroughPage,
  type LaunchedBrowser,
  ensureDashboardBuilt,
} from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const SHOTS = "dashboard-metadata-backups";

describe.skipIf(skipReason)("metadata backups on the dashboard", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let token: string;
  let poolName: string;

  async function api<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const result = await server.graphql<T>(query, variables, token);
    if (result.errors) throw new Error(JSON.stringify(result.errors));
    return result.data as T;
  }

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn({ lab: true, env: { LAB_DISK_MB: "8" } });
    token = await server.login();
    poolName = server.cairn.labs[0].poolName;
    browser = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("creates a Metadata job in the form and runs it", { timeout: 300_000 }, async () => {
    const { page } = browser;
    await signInThroughPage(page, "admin", ADMIN_PASSWORD);
    await page.goto("/jobs/new");
    await page.getByRole("heading", { name: "New job" }).waitFor();
    await page.getByLabel("Name", { exact: true }).first().fill("pool metadata");
    await page.getByRole("radio", { name: /^Metadata/ }).check();
    await page.getByRole("heading", { name: "Pools", exact: true }).waitFor();
    await page.getByRole("checkbox", { name: poolName, exact: true }).check();
    await expect(page.getByRole("checkbox", { name: /Include Cairn's configuration/ }).isChecked()).resolves.toBe(true);
    await page.getByRole("checkbox", { name: /^local/ }).check();
    await screenshot(page, `${SHOTS}/01-metadata-form`);
    await page.getByRole("button", { name: "Create job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    const jobId = page.url().split("/").pop()!;
    const saved = await api<{ job: any }>(
      "query($id: ID!) { job(id: $id) { mode selection { smart { poolIds } } settings { includeConfiguration } remotes { name } } }",
      { id: jobId },
    );
    const { pools } = await api<{ pools: { id: string; name: string }[] }>("{ pools { id name } }");
    expect(saved.job).toEqual({
      mode: "METADATA",
      selection: { smart: { poolIds: [pools.find((p) => p.name === poolName)!.id] } },
      settings: { includeConfiguration: true },
      remotes: [{ name: "local" }],
    });

    await page.getByRole("button", { name: "Run now" }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 120_000 });
    await page.locator('li[data-task-kind="pool"]').filter({ hasText: poolName }).waitFor();
    await page.locator('li[data-task-kind="configuration"]').waitFor();
    await screenshot(page, `${SHOTS}/02-metadata-run`);
  });

  it("lists the backups and restores the pool's metadata onto the pool from the page", { timeout: 300_000 }, async () => {
    const { page } = browser;
    const lab = server.cairn.labs[0];
    const xapi = createClient({ url: lab.url, auth: { user: lab.user, password: lab.password }, allowUnauthorized: true }) as Xapi;
    await xapi.connect();
    const vmRef = ((await xapi.call("VM.get_by_name_label", "web-ext4")) as string[])[0]!;
    await xapi.call("VM.set_name_label", vmRef, "renamed since the backup");
    await xapi.disconnect().catch(() => undefined);

    await page.goto("/metadata");
    await page.getByRole("heading", { name: "Metadata backups" }).waitFor();
    const poolRow = page.locator(`tr[data-metadata-backup="${poolName}"]`);
    await poolRow.waitFor();
    await page.locator('tr[data-metadata-backup="cairn"]').filter({ hasText: "without passwords and keys" }).waitFor();
    await shootAtBothWidths(page, SHOTS, "03-metadata-list");

    await poolRow.getByRole("button", { name: `Restore onto ${poolName}` }).click();
    await poolRow.getByText(/The pool's toolstack restarts; Cairn reconnects by itself/).waitFor();
    await screenshot(page, `${SHOTS}/04-confirm-restore`);
    await poolRow.getByRole("button", { name: `Replace the database of ${poolName}` }).click();
    await page
      .locator("[data-restored]")
      .filter({ hasText: `Pool ${poolName} took back its metadata` })
      .waitFor({ timeout: 60_000 });
    await expect(page.locator("[data-restored]").textContent()).resolves.toMatch(/Cairn's connection reconnects by itself/);
    await screenshot(page, `${SHOTS}/05-restored`);

    await eventually(
      "Cairn to reconnect and see the VM's name as it was",
      async () => {
        const { vms } = await api<{ vms: { name: string }[] }>("{ vms { name } }");
        expect(vms.map((vm) => vm.name)).toContain("web-ext4");
        expect(vms.map((vm) => vm.name)).not.toContain("renamed since the backup");
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
  });
});
