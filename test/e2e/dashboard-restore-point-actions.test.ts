/**
 * A VM's restore points in a real Chromium against a real Cairn with the lab, after real runs (two delta backups of
 * web-ext4, the newer built on the older, and a rolling snapshot): Delete first says what the removal does (the older delta:
 * the newer backup, named by its time, is merged into it), then the list refreshes without it and the newer point stays;
 * a snapshot's deletion names its pool; "Check now" runs a health check of the newer delta (which restores and boots
 * after the merge), and the point then shows its verdict in words with its time; a check whose VM does not boot shows
 * "failed" with the reason. An OPERATOR sees Check now and no Delete.
 * No sideways scroll at 390 px; screenshots at 1280 and 390 px go to test-results/dashboard-restore-point-actions/.
 */
import type { Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, createUser } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-restore-point-actions";

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

/** "2026-12-03 17:02:11 UTC", as the server names a backup's time in its sentences. */
const timeWords = (iso: string) => `${new Date(iso).toISOString().slice(0, 19).replace("T", " ")} UTC`;

async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText(`Signed in as ${username}`).waitFor(WAIT);
}

describe.skipIf(skipReason)("a VM's restore points: delete with what it does, check now, and the verdict", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  let webUuid = "";
  /** Newest first: the snapshot, the newer delta, the older delta (the first of its chain). */
  let points: { id: string; kind: string; timestamp: string }[] = [];

  const row = (page: Page, id: string): Locator => page.locator(`tr[data-restore-point="${id}"]`);
  /** The confirmation of a point's deletion: the line under its row. */
  const confirmationOf = (page: Page, id: string): Locator =>
    page.locator(`tr[data-removal-for="${id}"]`).getByRole("group", { name: /^Delete web-ext4 of .+\?$/ });
  const older = () => points.find((p) => p.kind === "VHD_CHAIN" && p !== newer())!;
  const newer = () => points.filter((p) => p.kind === "VHD_CHAIN")[0];
  const snapshot = () => points.find((p) => p.kind === "SNAPSHOT")!;

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture({ labDiskMb: 16 });
    const web = f.vm("web-ext4");
    webUuid = web.uuid;
    const [disk] = f.diskRefs(web.ref);
    const delta = await f.createJob({
      name: "actions-delta",
      mode: "DELTA",
      selection: { vmUuids: [web.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 5 }],
    });
    expectSuccess(await f.runToEnd(delta.id, delta.schedules[0].id));
    await f.xapi.call("lab.scribble", disk, 1, "actions-second");
    expectSuccess(await f.runToEnd(delta.id, delta.schedules[0].id));
    const rolling = await f.createJob({
      name: "actions-rolling",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [web.uuid] },
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(rolling.id, rolling.schedules[0].id));
    const listed = await f.gql<{ restorePoints: { nodes: typeof points } }>(
      "query($vm: String) { restorePoints(filter: { vmUuid: $vm }) { nodes { id kind timestamp } } }",
      { vm: web.uuid },
    );
    points = listed.restorePoints.nodes;
    expect(points.map((p) => p.kind).sort()).toEqual(["SNAPSHOT", "VHD_CHAIN", "VHD_CHAIN"]);

    browser = await launchBrowser({ baseURL: f.server.url });
    await signIn(browser.page, "admin", ADMIN_PASSWORD);
  }, 600_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => f?.stop(),
    ),
  );

  it("lists each point with its health check verdict in words, and its actions", async () => {
    const { page } = browser;
    await page.goto(`/vms/${webUuid}`);
    await page.getByRole("heading", { level: 1, name: "web-ext4" }).waitFor(WAIT);
    await expect.poll(() => page.locator("tr[data-restore-point]").count(), WAIT).toBe(3);
    for (const point of points) {
      const verdict = row(page, point.id).locator('td[data-label="Verdict"]');
      await expect(verdict.getAttribute("data-health-check")).resolves.toBe("UNVERIFIED");
      await expect(verdict.textContent()).resolves.toMatch(/^\s*not checked\s*$/);
      await row(page, point.id)
        .getByRole("button", { name: /^Check now: health check of web-ext4 of / })
        .waitFor();
      await row(page, point.id)
        .getByRole("button", { name: /^Delete web-ext4 of / })
        .waitFor();
    }
    await shootBoth(page, "01-vm-points");
  });

  it("deletes the older delta after saying the newer backup is merged into it; the newer point stays", async () => {
    const { page } = browser;
    await row(page, older().id)
      .getByRole("button", { name: /^Delete web-ext4 of / })
      .click();
    const confirm = confirmationOf(page, older().id);
    await confirm.waitFor(WAIT);
    await expect(confirm.getAttribute("data-removal")).resolves.toBe("MERGE_INTO_NEXT");
    const sentence = (await confirm.locator("[data-removal-description]").textContent()) ?? "";
    expect(sentence).toContain(`the next backup, of ${timeWords(newer().timestamp)}, is merged into it`);
    expect(sentence).toContain("so that it still restores");
    // The confirming button has the focus: Enter would delete, Escape goes back.
    await expect.poll(() => page.evaluate<string | undefined>("document.activeElement?.textContent?.trim()"), WAIT).toBe("Delete");
    await shootBoth(page, "02-delete-delta-confirmation");

    await confirm.getByRole("button", { name: "Delete", exact: true }).click();
    await row(page, older().id).waitFor({ state: "detached", ...WAIT });
    await row(page, newer().id).waitFor(WAIT);
    await expect.poll(() => page.locator("tr[data-restore-point]").count(), WAIT).toBe(2);
    const left = await f.gql<{ restorePoints: { nodes: { id: string }[] } }>(
      "query($vm: String) { restorePoints(filter: { vmUuid: $vm }) { nodes { id } } }",
      { vm: webUuid },
    );
    expect(left.restorePoints.nodes.map((p) => p.id).sort()).toEqual([newer().id, snapshot().id].sort());
  });

  it("deletes the snapshot after saying it is destroyed with its disks on its pool; Cancel first changes nothing", async () => {
    const { page } = browser;
    const { pools } = await f.gql<{ pools: { name: string }[] }>("{ pools { name } }");
    const deleteButton = row(page, snapshot().id).getByRole("button", { name: /^Delete web-ext4 of / });
    await deleteButton.click();
    const confirm = confirmationOf(page, snapshot().id);
    await confirm.waitFor(WAIT);
    await expect(confirm.getAttribute("data-removal")).resolves.toBe("DESTROY_ON_POOL");
    await expect(confirm.locator("[data-removal-description]").textContent()).resolves.toContain(`with its disks on pool ${pools[0].name}`);
    await confirm.getByRole("button", { name: "Cancel" }).click();
    await deleteButton.waitFor(WAIT);
    await expect(page.locator("tr[data-restore-point]").count()).resolves.toBe(2);

    await deleteButton.click();
    await confirm.waitFor(WAIT);
    await shootBoth(page, "03-delete-snapshot-confirmation");
    await confirm.getByRole("button", { name: "Delete", exact: true }).click();
    await row(page, snapshot().id).waitFor({ state: "detached", ...WAIT });
    await expect.poll(() => page.locator("tr[data-restore-point]").count(), WAIT).toBe(1);
  });

  it("checks the newer delta now: its health check run passes (it restores after the merge), and its verdict shows", async () => {
    const { page } = browser;
    await row(page, newer().id)
      .getByRole("button", { name: /^Check now: health check of web-ext4 of / })
      .click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, WAIT);
    const runId = page.url().split("/").pop()!;
    const run = await f.waitForEnd(runId);
    expectSuccess(run);
    expect(run.tasks.map((task: { kind: string }) => task.kind)).toEqual(expect.arrayContaining(["healthCheck", "start", "wait"]));

    await page.goto(`/vms/${webUuid}`);
    const verdict = row(page, newer().id).locator('td[data-label="Verdict"]');
    await verdict.waitFor(WAIT);
    await expect(verdict.getAttribute("data-health-check")).resolves.toBe("OK");
    // In words (a mark and a sentence with its time), not by colour alone.
    await expect(verdict.locator(".health").textContent()).resolves.toMatch(/^Health check passed .+\d/);
    await expect(verdict.textContent()).resolves.toContain("✓ booted in a health check");
    await shootBoth(page, "04-checked");
  });

  it("shows a failed health check with its reason and time, in words", async () => {
    const { page } = browser;
    await f.setFault("boot_fails", {});
    try {
      await row(page, newer().id)
        .getByRole("button", { name: /^Check now: / })
        .click();
      await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, WAIT);
      const run = await f.waitForEnd(page.url().split("/").pop()!);
      expect(run.status).toBe("FAILURE");
    } finally {
      await f.clearFaults();
    }
    await page.goto(`/vms/${webUuid}`);
    const verdict = row(page, newer().id).locator('td[data-label="Verdict"]');
    await verdict.waitFor(WAIT);
    await expect(verdict.getAttribute("data-health-check")).resolves.toBe("FAILED");
    await expect(verdict.textContent()).resolves.toContain("✗ health check failed");
    await expect(verdict.locator(".health").textContent()).resolves.toMatch(
      /^Health check failed \D*\d.*: VM\.start failed: BOOTLOADER_FAILED/,
    );
    await shootBoth(page, "05-check-failed");
  });

  it("shows an OPERATOR Check now and no Delete", async () => {
    await createUser(f.server, "operator", "OPERATOR");
    const operator = await launchBrowser({ baseURL: f.server.url });
    try {
      const { page } = operator;
      await signIn(page, "operator", "operator-password");
      await page.goto(`/vms/${webUuid}`);
      await row(page, newer().id)
        .getByRole("button", { name: /^Check now: / })
        .waitFor(WAIT);
      await expect(
        row(page, newer().id)
          .getByRole("button", { name: /^Delete / })
          .count(),
      ).resolves.toBe(0);
      await row(page, newer().id)
        .getByRole("link", { name: /^Restore web-ext4 from / })
        .waitFor();
      expect(operator.cspViolations).toEqual([]);
    } finally {
      await operator.close();
    }
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
