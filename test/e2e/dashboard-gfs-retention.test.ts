/**
 * GFS (long-term) retention in the dashboard, in a real Chromium against a real Cairn server with the lab: a DELTA job made
 * through the form with GFS days and weeks set in the folded Retention part (read back through the API as typed), then run
 * three times: every run falls on one day, so with exportRetention 1 and gfsDays 2 the runs' retention keeps the first
 * backup ("oldest of day") and the last one ("newest 1"). The job page's preview of the next run says what retentionPreview
 * says, Keep or Remove and why, in words. A GFS value over the API's limit comes back as a field error in the Retention part,
 * opened by itself. Nothing scrolls sideways at 390 px. Screenshots go to test-results/dashboard-gfs-retention/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoSeriousAxeViolations } from "../support/axe.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, signInThroughPage, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-gfs-retention";
const JOB_NAME = "gfs-nightly";

interface Decision {
  keep: boolean;
  reasons: string[];
  restorePoint: { id: string; timestamp: string };
}

const retentionFold = (page: Page) => page.locator('details[data-section="retention"]');
const isRetentionOpen = (page: Page) => retentionFold(page).evaluate((details) => (details as unknown as { open: boolean }).open);
const gfsGroup = (page: Page) => page.getByRole("group", { name: "Long-term (GFS)" });
const focusedId = (page: Page) => page.evaluate<string>("document.activeElement?.id ?? ''");

describe.skipIf(skipReason)("GFS retention in the job form, and the preview of what the next run keeps", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  let jobId = "";
  let scheduleId = "";

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture();
    browser = await launchBrowser({ baseURL: f.server.url, viewport: { width: 1280, height: 900 } });
    const { page } = browser;
    await signInThroughPage(page, "admin", ADMIN_PASSWORD);
  }, 600_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => f?.stop(),
    ),
  );

  const preview = () =>
    f.gql<{ retentionPreview: Decision[] }>(
      "query($jobId: ID!, $scheduleId: ID!) { retentionPreview(jobId: $jobId, scheduleId: $scheduleId) { keep reasons restorePoint { id timestamp } } }",
      { jobId, scheduleId },
    );

  it("creates a DELTA job with GFS days and weeks set in the folded Retention part, saved as typed", async () => {
    const { page } = browser;
    await page.goto("/jobs/new");
    await page.getByRole("heading", { name: "New job" }).waitFor(WAIT);
    await page.getByRole("checkbox", { name: /^local/ }).waitFor(WAIT);
    await page.getByLabel("Name", { exact: true }).first().fill(JOB_NAME);
    await page.getByRole("checkbox", { name: /web-ext4/ }).check();
    await page.getByRole("checkbox", { name: /^local/ }).check();
    await page.getByLabel("Time zone", { exact: true }).fill("UTC");

    await expect(isRetentionOpen(page)).resolves.toBe(false);
    await retentionFold(page).locator("summary").click();
    await page.getByLabel("Backups kept on each remote").fill("1");
    const gfs = gfsGroup(page);
    await gfs.getByLabel("Days", { exact: true }).fill("2");
    await gfs.getByLabel("Weeks", { exact: true }).fill("4");
    await gfs.getByLabel("Week starts on").selectOption("SUNDAY");
    // The day's start is offered as clock times, 00:00 to 23:00 in the schedule's time zone.
    const hours = await gfs.getByLabel("Day starts at").locator("option").allTextContents();
    expect(hours).toHaveLength(24);
    expect([hours[0], hours[23]]).toEqual(["00:00", "23:00"]);
    await expect(gfs.textContent().then((text) => text?.replace(/\s+/g, " "))).resolves.toContain("years, in UTC.");
    await expect(
      retentionFold(page)
        .locator("summary")
        .textContent()
        .then((text) => text?.replace(/\s+/g, " ").trim()),
    ).resolves.toBe("Retention: keep 1 backup + 1 per day for 2 days, per week for 4 weeks, no snapshot");
    // Folded again before saving: what it holds is saved all the same.
    await retentionFold(page).locator("summary").click();
    await page.getByRole("button", { name: "Create job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/, WAIT);
    jobId = new URL(page.url()).pathname.split("/").at(-1)!;
    await page.getByRole("heading", { level: 1, name: JOB_NAME }).waitFor(WAIT);

    const { job } = await f.gql<{ job: { schedules: Record<string, unknown>[] } }>(
      "query($id: ID!) { job(id: $id) { schedules { id exportRetention gfsDays gfsWeeks gfsMonths gfsYears weekStart dayStartHour timezone } } }",
      { id: jobId },
    );
    expect(job.schedules).toHaveLength(1);
    expect(job.schedules[0]).toMatchObject({
      exportRetention: 1,
      gfsDays: 2,
      gfsWeeks: 4,
      gfsMonths: 0,
      gfsYears: 0,
      weekStart: "SUNDAY",
      dayStartHour: 0,
      timezone: "UTC",
    });
    scheduleId = job.schedules[0]!.id as string;

    // No backup yet: the preview says so.
    const section = page.locator(`[data-retention-preview="${scheduleId}"]`);
    await section.getByText("No restore point of schedule 1 (0 2 * * *) on a remote yet.").waitFor(WAIT);
    await expect(section.getByRole("heading", { name: "What the next run of schedule 1 (0 2 * * *) keeps" }).isVisible()).resolves.toBe(
      true,
    );
    await expect(section.textContent()).resolves.toContain("after you save, the preview follows the saved settings");
    await shootAtBothWidths(page, SHOTS, "01-job-with-gfs-no-backup-yet");
  });

  it("after three runs on one day keeps the first (oldest of the day) and the last (newest 1), and previews the next run", async () => {
    const runIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const run = await f.runToEnd(jobId, scheduleId);
      expectSuccess(run);
      runIds.push(run.id);
    }
    // What the runs' retention left: the first run's backup and the last one's.
    const points = await f.restorePoints(jobId);
    expect(points.map((point) => point.run.id).sort()).toEqual([runIds[0], runIds[2]].sort());

    // The next run's backup becomes the newest 1: the last run's goes; the first stays as the oldest of its day and week.
    const { retentionPreview } = await preview();
    expect(retentionPreview).toHaveLength(2);
    const [newest, oldest] = retentionPreview;
    const byRun = new Map(points.map((point) => [point.id as string, point.run.id as string]));
    expect(byRun.get(newest!.restorePoint.id)).toBe(runIds[2]);
    expect(byRun.get(oldest!.restorePoint.id)).toBe(runIds[0]);
    expect(newest!.keep).toBe(false);
    expect(newest!.reasons).toEqual([
      expect.stringMatching(/^not among the newest 1, and not the oldest backup of any of the last 2 days, 4 weeks/),
    ]);
    expect(oldest!.keep).toBe(true);
    expect(oldest!.reasons).toEqual([
      expect.stringMatching(/^oldest of day \d{4}-\d\d-\d\d$/),
      expect.stringMatching(/^oldest of week from Sunday \d{4}-\d\d-\d\d$/),
    ]);

    // The job page says the same, in words.
    const { page } = browser;
    await page.goto(`/jobs/${jobId}`);
    const section = page.locator(`[data-retention-preview="${scheduleId}"]`);
    const rows = section.locator("tr[data-restore-point]");
    await expect.poll(() => rows.count(), WAIT).toBe(2);
    for (const [index, decision] of retentionPreview.entries()) {
      const row = rows.nth(index);
      await expect(row.getAttribute("data-restore-point")).resolves.toBe(decision.restorePoint.id);
      await expect(
        row
          .locator("[data-decision]")
          .textContent()
          .then((text) => text?.trim()),
      ).resolves.toBe(decision.keep ? "Keep" : "Remove");
      const shown = (await row.locator("[data-reasons]").textContent()) ?? "";
      for (const reason of decision.reasons) expect(shown).toContain(reason);
      await expect(row.locator('td[data-label="VM"]').textContent()).resolves.toBe("web-ext4");
      await expect(row.locator('td[data-label="Remote"]').textContent()).resolves.toBe("local");
    }
    await expect(section.locator("[data-retention-counts]").textContent()).resolves.toBe("Keeps 1 of 2 restore points, removes 1.");
    await shootAtBothWidths(page, SHOTS, "02-preview-after-three-runs");

    // Readable by everyone, the GFS fields unfolded too: no serious axe violation, wide, narrow and dark.
    await retentionFold(page).locator("summary").click();
    await gfsGroup(page).waitFor(WAIT);
    for (const [width, colorScheme] of [
      [1280, "light"],
      [390, "light"],
      [1280, "dark"],
    ] as const) {
      await page.setViewportSize({ width, height: 900 });
      await page.emulateMedia({ colorScheme });
      await expectNoSeriousAxeViolations(page, `the job page with its preview at ${width} px, ${colorScheme} theme`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.emulateMedia({ colorScheme: "light" });
  });

  it("shows a GFS value over the API's limit as a field error, in the Retention part opened by itself", async () => {
    const { page } = browser;
    await page.goto(`/jobs/${jobId}`);
    await page.getByRole("heading", { level: 1, name: JOB_NAME }).waitFor(WAIT);
    await retentionFold(page).locator("summary").click();
    // The form reads back what was saved.
    await expect(gfsGroup(page).getByLabel("Days", { exact: true }).inputValue()).resolves.toBe("2");
    await expect(gfsGroup(page).getByLabel("Week starts on").inputValue()).resolves.toBe("SUNDAY");
    await gfsGroup(page).getByLabel("Years", { exact: true }).fill("101");
    await retentionFold(page).locator("summary").click();
    await expect(isRetentionOpen(page)).resolves.toBe(false);
    await page.getByRole("button", { name: "Save changes" }).click();

    await expect.poll(() => isRetentionOpen(page), WAIT).toBe(true);
    const years = gfsGroup(page).getByLabel("Years", { exact: true });
    await expect.poll(() => years.getAttribute("aria-invalid"), WAIT).toBe("true");
    await expect(years.locator("xpath=following-sibling::p[contains(@class, 'field-error')]").textContent()).resolves.toMatch(/100/);
    await expect.poll(() => focusedId(page), WAIT).toBe("schedule-0-gfsYears");
    await expect(page.getByRole("alert").first().textContent()).resolves.toContain("see Retention below");

    // Nothing was saved.
    const { job } = await f.gql<{ job: { schedules: { gfsYears: number }[] } }>(
      "query($id: ID!) { job(id: $id) { schedules { gfsYears } } }",
      {
        id: jobId,
      },
    );
    expect(job.schedules[0]!.gfsYears).toBe(0);
    await shootAtBothWidths(page, SHOTS, "03-years-over-the-limit");
  });
});
