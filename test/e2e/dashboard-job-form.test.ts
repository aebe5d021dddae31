/**
 * The job form in parts (issue 16, "the job form is 2,970 px tall at 1280"), in a real Chromium against a real Cairn
 * server with the lab: the essentials open (name, mode, VMs, where the backups go, when it runs), retention, the advanced
 * settings and the reports folded under lines that say what they hold. Checks that the new-job form with its defaults stays
 * short at 1280 px and does not scroll sideways at 390 px, that the folds work from the keyboard, that a part holding a
 * refused field opens by itself with its message and the focus on the first one, and that values set in folded parts are
 * saved (read back through the API) and shown the same way when the job is edited. Screenshots go to
 * test-results/dashboard-job-form/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, signInThroughPage, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-job-form";
/** The issue asks for about 1,300 px; the bound leaves room for fonts that differ from one machine to the next. */
const MOST_FORM_HEIGHT = 1400;

/** The summary line of a folding part of the form. */
const fold = (page: Page, name: "retention" | "advanced" | "reports") => page.locator(`details[data-section="${name}"]`);
const summaryOf = (page: Page, name: "retention" | "advanced" | "reports") =>
  fold(page, name)
    .locator("summary")
    .textContent()
    .then((text) => text?.replace(/\s+/g, " ").trim());
const isOpen = (page: Page, name: "retention" | "advanced" | "reports") =>
  fold(page, name).evaluate((details) => (details as unknown as { open: boolean }).open);
/** The id of the focused element (evaluated as a string: the tests' tsconfig has no DOM types). */
const focusedId = (page: Page) => page.evaluate<string>("document.activeElement?.id ?? ''");

async function openNewJobForm(page: Page) {
  await page.goto("/jobs/new");
  await page.getByRole("heading", { name: "New job" }).waitFor(WAIT);
  await page.getByRole("checkbox", { name: /^local/ }).waitFor(WAIT);
}

/** Name, the lab's VM web-ext4 and the local remote: the essentials of a DELTA job. */
async function fillEssentials(page: Page, name: string) {
  await page.getByLabel("Name", { exact: true }).first().fill(name);
  await page.getByRole("checkbox", { name: /web-ext4/ }).check();
  await page.getByRole("checkbox", { name: /^local/ }).check();
}

describe.skipIf(skipReason)("the job form in parts, in the dashboard of a real Cairn server", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let token = "";

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn({ lab: true });
    token = await server.login();
    browser = await launchBrowser({ baseURL: server.url, viewport: { width: 1280, height: 900 } });
    const { page } = browser;
    await signInThroughPage(page, "admin", ADMIN_PASSWORD);
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("shows the essentials open and the rest folded under lines saying what it holds, short at 1280 px", async () => {
    const { page } = browser;
    await openNewJobForm(page);

    const box = await page.locator("form.job-form").boundingBox();
    const height = Math.round(box!.height);
    console.info(`new-job form with its defaults at 1280 px: ${height} px tall (bound ${MOST_FORM_HEIGHT} px)`);
    expect(height).toBeLessThan(MOST_FORM_HEIGHT);

    // The essentials, open.
    for (const label of ["Name", "Search VMs", "Cron expression", "Time zone"]) {
      await expect(page.getByLabel(label, { exact: true }).first().isVisible()).resolves.toBe(true);
    }
    await expect(page.getByRole("radio", { name: "Delta backup" }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole("group", { name: "Remotes" }).isVisible()).resolves.toBe(true);

    // The rest, folded, each saying what it holds now.
    for (const name of ["retention", "advanced", "reports"] as const) await expect(isOpen(page, name)).resolves.toBe(false);
    await expect(summaryOf(page, "retention")).resolves.toBe("Retention: keep 7 backups, no snapshot");
    await expect(summaryOf(page, "advanced")).resolves.toBe(
      "Advanced: 2 VMs at a time, no time limit, no retry, full backup only when needed, health check off, quiesce off, CBT + NBD off",
    );
    await expect(summaryOf(page, "reports")).resolves.toBe("Reports: when a run fails, no email address, no webhook");
    await expect(page.getByLabel("Concurrency").isVisible()).resolves.toBe(false);

    // A summary line follows the mode: a replication job keeps replicas, and compresses.
    await page.getByRole("radio", { name: "Disaster recovery" }).check();
    await expect(summaryOf(page, "retention")).resolves.toBe("Retention: keep 7 replicas, no snapshot");
    await expect(summaryOf(page, "advanced")).resolves.toMatch(/^Advanced: no compression, 2 VMs at a time/);
    await page.getByRole("radio", { name: "Delta backup" }).check();

    await shootAtBothWidths(page, SHOTS, "01-new-job-defaults");
  });

  it("opens and closes a folded part from the keyboard, with the focus visible", async () => {
    const { page } = browser;
    await openNewJobForm(page);
    await page.getByRole("button", { name: "Remove schedule 1" }).focus();
    await page.keyboard.press("Tab");
    await expect(page.evaluate<string>("document.activeElement?.tagName")).resolves.toBe("SUMMARY");
    await expect(page.evaluate<boolean>("document.activeElement.matches(':focus-visible')")).resolves.toBe(true);
    await expect(page.evaluate<string>("getComputedStyle(document.activeElement).outlineStyle")).resolves.toBe("solid");
    await page.keyboard.press("Enter");
    await expect.poll(() => isOpen(page, "retention")).toBe(true);
    await page.keyboard.press("Tab");
    await expect(focusedId(page)).resolves.toBe("schedule-0-retention");
    await page.keyboard.press("Shift+Tab");
    await page.keyboard.press("Space");
    await expect.poll(() => isOpen(page, "retention")).toBe(false);
    // The next part's summary is next in the tab order.
    await page.keyboard.press("Tab");
    await expect(page.evaluate<string>("document.activeElement?.closest('details')?.dataset.section")).resolves.toBe("advanced");
  });

  it("opens the folded parts whose fields the server refused, shows each message there, and focuses the first", async () => {
    const { page } = browser;
    await openNewJobForm(page);
    await fillEssentials(page, "refused-in-folds");
    // Two refusals in two folded parts, which are closed again before saving.
    await fold(page, "retention").locator("summary").click();
    await page.getByLabel("Backups kept on each remote").fill("0");
    await fold(page, "retention").locator("summary").click();
    await fold(page, "reports").locator("summary").click();
    await page.getByLabel("Report email addresses").fill("ops@example.net, not-an-address");
    await fold(page, "reports").locator("summary").click();
    for (const name of ["retention", "reports"] as const) await expect(isOpen(page, name)).resolves.toBe(false);

    await page.getByRole("button", { name: "Create job" }).click();
    await page.getByRole("alert").filter({ hasText: "Some settings need a change: see Retention and Reports below." }).waitFor(WAIT);
    await expect(isOpen(page, "retention")).resolves.toBe(true);
    await expect(isOpen(page, "reports")).resolves.toBe(true);
    await expect(isOpen(page, "advanced")).resolves.toBe(false);

    const retention = page.getByLabel("Backups kept on each remote");
    await expect(retention.getAttribute("aria-invalid")).resolves.toBe("true");
    const retentionError = fold(page, "retention").locator(".field-error");
    await expect(retentionError.textContent()).resolves.toMatch(/it must be at least 1$/);
    await expect(retentionError.isVisible()).resolves.toBe(true);
    const emailError = fold(page, "reports").locator(".field-error");
    await expect(emailError.textContent()).resolves.toMatch(/^Must be an email address .*not-an-address/);
    await expect(emailError.isVisible()).resolves.toBe(true);
    await expect(summaryOf(page, "retention")).resolves.toBe("Retention: keep 0 backups, no snapshot (1 setting needs a change)");
    // The first refused field in the order of the form has the focus.
    await expect.poll(() => focusedId(page)).toBe("schedule-0-retention");
    await shootAtBothWidths(page, SHOTS, "02-refused-fields-unfolded");

    // Closing a part again keeps its problem in sight on its summary line.
    await fold(page, "reports").locator("summary").click();
    await expect(summaryOf(page, "reports")).resolves.toMatch(/\(1 setting needs a change\)$/);

    const jobs = await server.graphql<{ jobs: { name: string }[] }>("{ jobs { name } }", {}, token);
    expect(jobs.data?.jobs.map((job) => job.name)).not.toContain("refused-in-folds");
  });

  it("saves what was set in folded parts, and shows the same parts when the job is edited", async () => {
    const { page } = browser;
    await openNewJobForm(page);
    await fillEssentials(page, "set-in-folds");

    await fold(page, "retention").locator("summary").click();
    await page.getByLabel("Backups kept on each remote").fill("14");
    await page.getByLabel("Snapshots kept on the pool").fill("3");

    await fold(page, "advanced").locator("summary").click();
    await page.getByLabel("Concurrency").fill("4");
    await page.getByLabel("Timeout (minutes)").fill("90");
    await page.getByLabel("Full backup every").fill("5");
    await page.getByLabel("Retries").fill("2");
    const healthCheck = page.getByLabel("Health check SR");
    await healthCheck.selectOption({ index: 1 });
    const healthCheckSr = await healthCheck.inputValue();
    const healthCheckLabel = (await healthCheck.locator("option:checked").textContent())!.trim();
    await page.getByRole("checkbox", { name: /Quiesce/ }).check();
    await page.getByRole("checkbox", { name: /Changed Block Tracking/ }).check();
    await page.getByLabel("NBD connections per disk").fill("3");

    await fold(page, "reports").locator("summary").click();
    await page.getByLabel("Send a report").selectOption("ALWAYS");
    await page.getByLabel("Report email addresses").fill("ops@example.net, backup@example.net");
    await page.getByLabel("Report webhook URL").fill("https://hooks.example.net/cairn/secret-token");

    // Folded again, each line says what was set.
    for (const name of ["retention", "advanced", "reports"] as const) await fold(page, name).locator("summary").click();
    const expected = {
      retention: "Retention: keep 14 backups, 3 snapshots",
      advanced: `Advanced: 4 VMs at a time, stopped after 90 min, 2 retries, a full backup every 5 backups, health check on ${healthCheckLabel}, quiesce on, CBT + NBD with 3 connections per disk`,
    };
    await expect(summaryOf(page, "retention")).resolves.toBe(expected.retention);
    await expect(summaryOf(page, "advanced")).resolves.toBe(expected.advanced);
    await expect(summaryOf(page, "reports")).resolves.toBe(
      "Reports: after every run, to ops@example.net and backup@example.net, webhook to hooks.example.net",
    );

    await page.getByRole("button", { name: "Create job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/, WAIT);
    const jobId = page.url().split("/").pop()!;
    await page.getByRole("heading", { name: "set-in-folds" }).waitFor(WAIT);

    const readBack = async () =>
      (
        await server.graphql<{ job: any }>(
          `query($id: ID!) { job(id: $id) {
            mode selection { vmUuids } remotes { name }
            settings { concurrency timeoutSeconds fullInterval retries healthCheckSrUuid quiesce cbtNbd nbdConnections
              reportWhen reportEmails reportWebhookUrl }
            schedules { cron exportRetention snapshotRetention } } }`,
          { id: jobId },
          token,
        )
      ).data!.job;
    const saved = await readBack();
    expect(saved).toMatchObject({
      mode: "DELTA",
      remotes: [{ name: "local" }],
      settings: {
        concurrency: 4,
        timeoutSeconds: 90 * 60,
        fullInterval: 5,
        retries: 2,
        healthCheckSrUuid: healthCheckSr,
        quiesce: true,
        cbtNbd: true,
        nbdConnections: 3,
        reportWhen: "ALWAYS",
        reportEmails: ["ops@example.net", "backup@example.net"],
        reportWebhookUrl: "https://hooks.example.net/…",
      },
      schedules: [{ cron: "0 2 * * *", exportRetention: 14, snapshotRetention: 3 }],
    });
    expect(saved.selection.vmUuids).toHaveLength(1);

    // Editing shows the same parts, folded, saying the same (the webhook by its redacted form).
    for (const name of ["retention", "advanced", "reports"] as const) await expect(isOpen(page, name)).resolves.toBe(false);
    await expect(summaryOf(page, "retention")).resolves.toBe(expected.retention);
    await expect(summaryOf(page, "advanced")).resolves.toBe(expected.advanced);
    await expect(summaryOf(page, "reports")).resolves.toBe(
      "Reports: after every run, to ops@example.net and backup@example.net, webhook https://hooks.example.net/…",
    );
    await shootAtBothWidths(page, SHOTS, "03-edit-job");

    // A change in a folded part is saved too, and the rest kept.
    await fold(page, "retention").locator("summary").click();
    await page.getByLabel("Backups kept on each remote").fill("10");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.getByRole("status").filter({ hasText: "Saved." }).waitFor(WAIT);
    const updated = await readBack();
    expect(updated.schedules).toMatchObject([{ exportRetention: 10, snapshotRetention: 3 }]);
    expect(updated.settings).toEqual(saved.settings);
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
