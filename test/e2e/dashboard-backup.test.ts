/**
 * The backup pages end to end: a real Chromium against a real Cairn server with the lab, through the dashboard only.
 * Sign in, create a DELTA job with a schedule through the form (after the server refused a bad cron at its field), run
 * it, watch the run page reach SUCCESS without a reload, find the restore point on the Restore page and ask for the
 * restore. Screenshots of every page go to test-results/dashboard-backup/ (light, plus a few in dark).
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, screenshot, type LaunchedBrowser } from "../support/browser.js";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { skipReasonForTools } from "../support/system-tools.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const skipReason = skipReasonForTools(["chromium"]);
const SHOTS = "dashboard-backup";

/** Marks the document; a reload would lose the mark (evaluated as strings: the tests' tsconfig has no DOM types). */
const markDocument = (page: Page) => page.evaluate(`window.__cairnNoReload = true`);
const documentMarked = (page: Page) => page.evaluate<boolean>(`window.__cairnNoReload === true`);

async function signIn(page: Page, username: string, password: string) {
  await page.goto("/signin");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText(`Signed in as ${username}`).waitFor();
}

describe.skipIf(skipReason)("backing up through the dashboard served by a real Cairn server", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let jobId = "";
  let runId = "";

  beforeAll(async () => {
    if (!existsSync(`${REPO}/dashboard/build/200.html`)) {
      execFileSync("npm", ["run", "build:dashboard", "--silent"], { cwd: REPO, stdio: "inherit" });
    }
    server = await startTestCairn({ lab: true });
    browser = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it("signs in and shows an overview that says what to do next", async () => {
    const { page } = browser;
    await signIn(page, "admin", ADMIN_PASSWORD);
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await page.getByText("No backup job yet.").waitFor();
    // The lab's VMs have no restore point: they stand out.
    await page.getByRole("heading", { name: /VMs? without a good restore point in 24 hours/ }).waitFor();
    await screenshot(page, `${SHOTS}/01-overview-empty`);
  });

  it("shows the server's refusal of a bad cron at the cron field, then creates a DELTA job with a schedule", async () => {
    const { page } = browser;
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Jobs" }).click();
    await page.getByRole("link", { name: "New job" }).click();
    await page.getByRole("heading", { name: "New job" }).waitFor();

    await page.getByLabel("Name", { exact: true }).first().fill("nightly-delta");
    await expect(page.getByRole("radio", { name: /Delta backup/ }).isChecked()).resolves.toBe(true);
    await page.getByLabel("Search VMs").fill("web");
    await page.getByRole("checkbox", { name: /web-ext4/ }).check();
    await page.getByRole("checkbox", { name: /^local/ }).check();

    // A cron firing every second: the browser's preview warns, and the server refuses it at input.schedules.0.cron.
    const cron = page.getByLabel("Cron expression");
    await cron.fill("* * * * * *");
    await page.getByRole("button", { name: "Create job" }).click();
    await page.locator("#schedule-0-cron-error").filter({ hasText: /more than once a minute/ }).waitFor();
    await expect(cron.getAttribute("aria-invalid")).resolves.toBe("true");
    await screenshot(page, `${SHOTS}/02-job-form-field-error`);

    await cron.fill("30 3 * * 1-5");
    await page.getByLabel("Time zone").fill("Europe/Paris");
    const preview = page.getByTestId("cron-preview");
    await preview.filter({ hasText: /03:30/ }).waitFor();
    await preview.filter({ hasText: /Monday through Friday/ }).waitFor();
    await expect(preview.locator("li").count()).resolves.toBe(3);
    await screenshot(page, `${SHOTS}/03-job-form`);

    await page.getByRole("button", { name: "Create job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    jobId = page.url().split("/").pop()!;
    await page.getByRole("heading", { name: "nightly-delta" }).waitFor();

    const saved = await server.graphql<{ job: any }>(
      `query($id: ID!) { job(id: $id) { mode selection { vmUuids } remotes { name } schedules { cron timezone exportRetention nextRunAt } } }`,
      { id: jobId },
      await server.login(),
    );
    expect(saved.data?.job.mode).toBe("DELTA");
    expect(saved.data?.job.selection.vmUuids).toHaveLength(1);
    expect(saved.data?.job.remotes).toEqual([{ name: "local" }]);
    expect(saved.data?.job.schedules).toMatchObject([{ cron: "30 3 * * 1-5", timezone: "Europe/Paris", exportRetention: 7 }]);
    expect(saved.data?.job.schedules[0].nextRunAt).toBeTruthy();
  });

  it("runs the job and the run page reaches SUCCESS without a reload", async () => {
    const { page } = browser;
    await markDocument(page);
    await page.getByRole("button", { name: "Run now" }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    runId = page.url().split("/").pop()!;
    await page.getByRole("heading", { name: "Tasks" }).waitFor();
    await screenshot(page, `${SHOTS}/04-run-started`);

    await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 120_000 });
    expect(await documentMarked(page)).toBe(true); // the same document all along: updated by graphql-ws, not reloaded
    // The task tree shows the VM's task and its children, all ended.
    await page.locator('li[data-task-kind="vm"]').filter({ hasText: "web-ext4" }).waitFor();
    await expect(page.locator('li[data-task-kind][data-status="FAILURE"]').count()).resolves.toBe(0);
    await expect(page.getByRole("progressbar").count()).resolves.toBe(0);
    await screenshot(page, `${SHOTS}/05-run-success`);
  });

  it("lists the run in the logs, filtered by job and status", async () => {
    const { page } = browser;
    await page.goto(`/logs?job=${jobId}&status=SUCCESS`);
    await page.locator(`tr[data-run="${runId}"]`).waitFor();
    await page.goto("/logs?status=FAILURE");
    await page.getByText("No run matches these filters.").waitFor();
    await page.goto("/logs");
    await page.locator(`tr[data-run="${runId}"]`).waitFor();
    await screenshot(page, `${SHOTS}/06-logs`);
  });

  it("shows the job on the overview with its last run as a green mark and the day's totals", async () => {
    const { page } = browser;
    await page.goto("/");
    const row = page.locator('tr[data-job="nightly-delta"]');
    await row.locator('[data-status="SUCCESS"]').waitFor();
    await row.getByText("30 3 * * 1-5").waitFor();
    await page.getByRole("img", { name: "Bytes and durations of backups per day" }).waitFor();
    await screenshot(page, `${SHOTS}/07-overview`);
  });

  it("finds the restore point on the Restore page and asks for the restore", async () => {
    const { page } = browser;
    await page.goto("/restore");
    await page.getByLabel("Restore from").selectOption({ label: /^local/ as unknown as string }).catch(async () => {
      const value = await page.locator("#restore-remote option", { hasText: "local" }).getAttribute("value");
      await page.getByLabel("Restore from").selectOption(value!);
    });
    await page.getByRole("radio", { name: /web-ext4/ }).check();
    const points = page.locator("tr[data-restore-point]");
    await points.first().waitFor();
    await expect(points.count()).resolves.toBe(1);
    await points.first().getByRole("radio").check();
    const pool = await page.locator("#restore-pool option:not([disabled])").first().getAttribute("value");
    await page.getByLabel("Pool").selectOption(pool!);
    const sr = await page.locator("#restore-sr option:not([disabled])").first().getAttribute("value");
    await page.getByLabel("SR").selectOption(sr!);
    await page.getByLabel("Name", { exact: true }).waitFor();
    await screenshot(page, `${SHOTS}/08-restore-steps`);

    await page.getByRole("button", { name: "Restore" }).click();
    // restoreVm is being built: either its run page opens, or the API's own message shows (UNAVAILABLE until then).
    const outcome = await Promise.race([
      page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, { timeout: 30_000 }).then(() => "run" as const),
      page.locator(".steps [role=alert]").waitFor({ timeout: 30_000 }).then(() => "refused" as const),
    ]);
    if (outcome === "refused") {
      const message = await page.locator(".steps [role=alert]").textContent();
      expect(message?.trim()).toBeTruthy();
    } else {
      // The restore's run page follows it live, like a backup's.
      await page.getByRole("heading", { name: "Tasks" }).waitFor();
      await screenshot(page, `${SHOTS}/09-restore-running`);
      await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 120_000 });
    }
    await screenshot(page, `${SHOTS}/09-restore-requested`);
  });

  it("tests a remote and shows the measured speeds", async () => {
    const { page } = browser;
    await page.goto("/remotes");
    const row = page.locator('tr[data-remote="local"]');
    await row.getByRole("button", { name: "Test" }).click();
    await row.getByTestId("last-test").filter({ hasText: /write .+\/s, read .+\/s/ }).waitFor();
    await expect(row.locator("td").nth(4).textContent()).resolves.toMatch(/[1-9]/); // restore point count
    await page.getByRole("button", { name: "Add a remote" }).click();
    await page.getByLabel("Kind").selectOption("S3");
    await page.getByLabel("Secret key").waitFor();
    await screenshot(page, `${SHOTS}/10-remotes`);
  });

  it("lists the lab pool as connected", async () => {
    const { page } = browser;
    await page.goto("/pools");
    await page.locator("tr[data-pool]").first().getByText("Connected").waitFor();
    await screenshot(page, `${SHOTS}/11-pools`);
  });

  it("shows a viewer no button it may not use", async () => {
    await createUser(server, "viewer", "VIEWER", "viewer-password");
    const viewer = await launchBrowser({ baseURL: server.url, colorScheme: "dark" });
    try {
      const { page } = viewer;
      await signIn(page, "viewer", "viewer-password");
      await page.goto("/jobs");
      await page.locator('tr[data-job="nightly-delta"]').waitFor();
      for (const name of ["New job", "Run now", "Disable", "Edit", "Delete"]) {
        await expect(page.getByRole("button", { name }).or(page.getByRole("link", { name })).count()).resolves.toBe(0);
      }
      await screenshot(page, `${SHOTS}/12-jobs-viewer-dark`);
      await page.goto(`/runs/${runId}`);
      await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor();
      await expect(page.getByRole("button", { name: "Cancel run" }).count()).resolves.toBe(0);
      await screenshot(page, `${SHOTS}/13-run-dark`);
      await page.goto("/");
      await page.locator('tr[data-job="nightly-delta"]').waitFor();
      await screenshot(page, `${SHOTS}/14-overview-dark`);
      await page.goto("/remotes");
      await page.locator('tr[data-remote="local"]').waitFor();
      await expect(page.getByRole("button", { name: "Test" }).count()).resolves.toBe(0);
    } finally {
      await viewer.close();
    }
  });
});
