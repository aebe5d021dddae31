/**
 * Each run tells its size, duration and speed, as Xen Orchestra's logs do (issue 16, "Progress that contradicts itself"), in
 * a real Chromium against a real Cairn server with the lab, after a real delta backup to the local remote: its row in the
 * Logs shows what it transferred, how long it took and the speed that makes (transferred over duration, written by the
 * dashboard's own formatters), and the run page shows the same speed next to Transferred and Duration. Both pages are
 * checked at 1280 and 390 px with no sideways scroll, the Logs with axe; screenshots go to test-results/dashboard-run-speed/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatAverageSpeed, formatDuration, formatTransferred } from "../../dashboard/src/lib/format.js";
import { seriousAxeViolations } from "../support/axe.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, signInThroughPage, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-run-speed";

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

interface RunFigures {
  id: string;
  status: string;
  transferredBytes: number;
  durationSeconds: number | null;
}

describe.skipIf(skipReason)("a run's size, duration and speed in the Logs and on its page", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  let run: RunFigures;

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture();
    const web = f.vm("web-ext4");
    const delta = await f.createJob({
      name: "speed-delta",
      mode: "DELTA",
      selection: { vmUuids: [web.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 2 }],
    });
    // The lab exports at 2 MiB/s: its 4 MiB disk takes a couple of seconds, so the duration (whole seconds) is not 0.
    await f.setFault("export_bytes_per_second", { rate: 2 * 1024 * 1024 });
    const ended = await f.runToEnd(delta.id, delta.schedules[0].id);
    expectSuccess(ended);
    run = (
      await f.gql<{ run: RunFigures }>("query($id: ID!) { run(id: $id) { id status transferredBytes durationSeconds } }", {
        id: ended.id,
      })
    ).run;

    browser = await launchBrowser({ baseURL: f.server.url });
    const { page } = browser;
    await signInThroughPage(page, "admin", ADMIN_PASSWORD);
  }, 600_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => f?.stop(),
    ),
  );

  it("moved data and took time: a delta backup has a size and a speed to show", () => {
    expect(run.transferredBytes).toBeGreaterThan(0);
    expect(run.durationSeconds).toBeGreaterThan(0);
    expect(formatAverageSpeed(run.transferredBytes, run.durationSeconds)).toMatch(/\/s$/);
  });

  it("shows the run's size, duration and speed in its row of the Logs, at both widths, with no serious axe violation", async () => {
    const { page } = browser;
    await page.goto("/logs");
    const row = page.locator(`tr[data-run="${run.id}"]`);
    await row.waitFor(WAIT);
    const cell = (label: string) => row.locator(`td[data-label="${label}"]`);
    await expect(cell("Transferred").textContent()).resolves.toBe(formatTransferred(run.transferredBytes));
    await expect(cell("Duration").textContent()).resolves.toBe(formatDuration(run.durationSeconds));
    await expect(cell("Speed").textContent()).resolves.toBe(formatAverageSpeed(run.transferredBytes, run.durationSeconds));
    await shootBoth(page, "01-logs");
    expect(await seriousAxeViolations(page)).toEqual([]);
  });

  it("shows the same speed next to Transferred and Duration on the run page", async () => {
    const { page } = browser;
    await page.locator(`tr[data-run="${run.id}"] td[data-label="Job"]`).getByRole("link", { name: "speed-delta" }).click();
    await page.waitForURL(`**/runs/${run.id}`);
    const summary = page.getByRole("region", { name: "Run summary" });
    await summary.waitFor(WAIT);
    const figure = (term: string) =>
      summary.locator("div", { has: page.locator("dt", { hasText: new RegExp(`^${term}$`) }) }).locator("dd");
    await expect(figure("Duration").textContent()).resolves.toBe(formatDuration(run.durationSeconds));
    await expect(figure("Speed").textContent()).resolves.toBe(formatAverageSpeed(run.transferredBytes, run.durationSeconds));
    await shootBoth(page, "02-run-page");
  });

  it("says, while a slowed run goes, how long the run and its transfer have left", async () => {
    const { page } = browser;
    const full = await f.createJob({
      name: "speed-full",
      mode: "FULL",
      selection: { vmUuids: [f.vm("web-ext4").uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    // 256 KiB/s: the 4 MiB disk's export takes a quarter of a minute, time to see it go.
    await f.setFault("export_bytes_per_second", { rate: 256 * 1024 });
    try {
      const runId = await f.startRun(full.id, full.schedules[0].id);
      await page.goto(`/runs/${runId}`);
      const summary = page.getByRole("region", { name: "Run summary" });
      await summary
        .locator("[data-eta]")
        .filter({ hasText: /^about \d+ (s|min)/ })
        .waitFor(WAIT);
      await page
        .locator('li[data-task-kind="transfer"] [data-eta]')
        .filter({ hasText: /^about .+ left$/ })
        .first()
        .waitFor(WAIT);
      await shootBoth(page, "03-run-going");
      expectSuccess(await f.waitForEnd(runId));
      // Once ended, no time left is shown anywhere on the page.
      await page.getByText("Success", { exact: true }).first().waitFor(WAIT);
      await page
        .locator("[data-eta]")
        .first()
        .waitFor({ state: "detached", ...WAIT });
    } finally {
      await f.clearFaults();
    }
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
