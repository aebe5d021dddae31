/**
 * The Restore page's sources in a real Chromium against a real Cairn server with the lab, after real runs: a delta backup
 * and a rolling snapshot of web-ext4, a disaster-recovery replica of db-data. Through /restore only: a whole VM restored
 * from the remote's backup, from the snapshot and from the replica ("Snapshots and replicas", which live on the pool's SRs),
 * each through to a restore run that ends SUCCESS and a new VM on the lab pool; the form's field errors all at once;
 * file-level restore offered for the delta backup only; /restore?point=<id> opening with that point, its source and its VM
 * chosen, and an unknown id explained. Screenshots at 1280 and 390 px (no sideways scroll) go to
 * test-results/dashboard-restore-sources/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, signInThroughPage, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-restore-sources";
/** A restore on a busy machine may take a minute or two: the run page waits for it, the test is bounded above that. */
const RESTORE_TEST_MS = 300_000;

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

interface Point {
  id: string;
  kind: string;
  vmUuid: string;
  sr: string | null;
  remote: { id: string } | null;
}

describe.skipIf(skipReason)("the Restore page restores from remotes, snapshots and replicas", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  let poolId = "";
  let webUuid = "";
  let dbUuid = "";
  let delta: Point;
  let snapshot: Point;
  let replica: Point;

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture();
    const web = f.vm("web-ext4");
    const db = f.vm("db-data");
    webUuid = web.uuid;
    dbUuid = db.uuid;
    const { srs, pools } = await f.gql<{ srs: { uuid: string; name: string }[]; pools: { id: string }[] }>(
      "{ srs { uuid name } pools { id } }",
    );
    poolId = pools[0]!.id;
    const second = srs.find((sr) => sr.name === "Second storage")!;

    const deltaJob = await f.createJob({
      name: "sources-delta",
      mode: "DELTA",
      selection: { vmUuids: [web.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(deltaJob.id, deltaJob.schedules[0]!.id));
    const rollingJob = await f.createJob({
      name: "sources-rolling",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [web.uuid] },
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(rollingJob.id, rollingJob.schedules[0]!.id));
    const drJob = await f.createJob({
      name: "sources-dr",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [db.uuid] },
      srUuids: [second.uuid],
      schedules: [{ cron: "0 4 * * *", copyRetention: 1 }],
    });
    expectSuccess(await f.runToEnd(drJob.id, drJob.schedules[0]!.id));

    delta = (await f.restorePoints(deltaJob.id, "VHD_CHAIN"))[0];
    snapshot = (await f.restorePoints(rollingJob.id, "SNAPSHOT"))[0];
    replica = (await f.restorePoints(drJob.id, "REPLICA"))[0];
    expect([delta?.kind, snapshot?.kind, replica?.kind]).toEqual(["VHD_CHAIN", "SNAPSHOT", "REPLICA"]);

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

  /** Chooses the source, the VM and the restore point on /restore. */
  async function choose(page: Page, source: "local" | "pools", vmUuid: string, pointId: string) {
    await page.goto("/restore");
    const value = source === "pools" ? "pools" : f.remoteId;
    await page.locator(`#restore-remote option[value="${value}"]`).waitFor({ state: "attached", ...WAIT });
    await page.getByLabel("Restore from").selectOption(value);
    await page.locator(`input[name="vm"][value="${vmUuid}"]`).check(WAIT);
    await page.locator(`tr[data-restore-point="${pointId}"]`).getByRole("radio").check(WAIT);
  }

  /** Fills the restore form (on the lab pool, chosen already: the only one), submits, and follows the run to SUCCESS. */
  async function restoreOnto(page: Page, srName: string, vmName: string, shot: string) {
    const form = page.getByRole("form", { name: /^Restore .+ as a new VM$/ });
    await form.waitFor(WAIT);
    await expect.poll(() => page.getByLabel("Pool", { exact: true }).inputValue(), WAIT).toBe(poolId);
    const sr = await page.locator("#restore-sr option", { hasText: srName }).getAttribute("value");
    await page.getByLabel("SR", { exact: true }).selectOption(sr!);
    await page.getByLabel("Name", { exact: true }).fill(vmName);
    await shootBoth(page, shot);
    await page.getByRole("button", { name: "Restore", exact: true }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, WAIT);
    const runId = page.url().split("/").pop()!;
    await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 240_000 });
    expectSuccess(await f.waitForEnd(runId));
    // The inventory follows the pool's events (debounced): wait until it shows the new VM.
    const restored = await eventually("the restored VM on the lab pool", async () => {
      const { vms } = await f.gql<{ vms: { name: string; tags: string[]; pool: { id: string } | null }[] }>(
        "query($search: String) { vms(search: $search) { name tags pool { id } } }",
        { search: vmName },
      );
      expect(vms.map((vm) => vm.name)).toEqual([vmName]);
      return vms[0]!;
    });
    expect(restored.pool?.id).toBe(poolId);
    expect(restored.tags).toContain("cairn:restored");
  }

  it("offers each remote and the snapshots and replicas as sources", async () => {
    const { page } = browser;
    await page.goto("/restore");
    const options = page.locator("#restore-remote option:not([disabled])");
    await options.first().waitFor({ state: "attached", ...WAIT });
    const texts = await options.allTextContents();
    expect(texts).toEqual(["local (LOCAL, 1 restore point)", "Snapshots and replicas (1 snapshot, 1 replica)"]);
    await shootBoth(page, "01-sources");
  });

  it(
    "restores the whole VM from the remote's delta backup, after showing every missing field at once",
    async () => {
      const { page } = browser;
      await choose(page, "local", webUuid, delta.id);
      // A delta backup on a remote: files and folders can be restored too.
      await page.getByRole("radio", { name: /Files and folders/ }).waitFor(WAIT);
      await expect(page.getByLabel("Name", { exact: true }).inputValue()).resolves.toMatch(
        /^web-ext4 \(restored from \d{4}-\d\d-\d\d \d\d:\d\d\)$/,
      );

      // No SR and a name too long: both said at once, before anything is sent.
      await page.getByLabel("Name", { exact: true }).fill("x".repeat(300));
      await page.getByRole("button", { name: "Restore", exact: true }).click();
      await page.locator("#restore-srUuid-error").filter({ hasText: "Choose the SR of" }).waitFor(WAIT);
      await page.locator("#restore-name-error").filter({ hasText: "At most 255 characters" }).waitFor(WAIT);
      await expect(page.getByLabel("Name", { exact: true }).getAttribute("aria-invalid")).resolves.toBe("true");
      await expect(page.getByLabel("SR", { exact: true }).getAttribute("aria-invalid")).resolves.toBe("true");
      await shootBoth(page, "02-field-errors");

      await restoreOnto(page, "Second storage", "web-ext4 from the remote", "03-remote-form");
    },
    RESTORE_TEST_MS,
  );

  it(
    "restores the whole VM from a snapshot, shown on its pool's SR, with no file-level restore offered",
    async () => {
      const { page } = browser;
      await choose(page, "pools", webUuid, snapshot.id);
      const row = page.locator(`tr[data-restore-point="${snapshot.id}"]`);
      await expect(row.getAttribute("data-kind")).resolves.toBe("SNAPSHOT");
      await expect(row.locator("[data-where]").textContent()).resolves.toMatch(/^SR Local storage \(pool .+\)$/);
      await page.locator("[data-no-file-restore]").filter({ hasText: "this restore point is a snapshot" }).waitFor(WAIT);
      await expect(page.getByRole("radio", { name: /Files and folders/ }).count()).resolves.toBe(0);
      await page.getByText("A snapshot is copied inside the pool holding it.").waitFor(WAIT);
      await restoreOnto(page, "Local storage", "web-ext4 from the snapshot", "04-snapshot-form");
    },
    RESTORE_TEST_MS,
  );

  it(
    "restores the whole VM from a replica, shown on its pool's SR",
    async () => {
      const { page } = browser;
      await choose(page, "pools", dbUuid, replica.id);
      const row = page.locator(`tr[data-restore-point="${replica.id}"]`);
      await expect(row.getAttribute("data-kind")).resolves.toBe("REPLICA");
      await expect(row.locator("[data-where]").textContent()).resolves.toMatch(/^SR Second storage \(pool .+\)$/);
      await page.locator("[data-no-file-restore]").filter({ hasText: "this restore point is a replica" }).waitFor(WAIT);
      await restoreOnto(page, "Second storage", "db-data from the replica", "05-replica-form");
    },
    RESTORE_TEST_MS,
  );

  it("opens /restore?point=<id> with that point, its source and its VM chosen", async () => {
    const { page } = browser;
    for (const [point, source, vmUuid] of [
      [delta, f.remoteId, webUuid],
      [replica, "pools", dbUuid],
    ] as const) {
      await page.goto(`/restore?point=${point.id}`);
      await page.locator(`tr[data-restore-point="${point.id}"]`).getByRole("radio", { checked: true }).waitFor(WAIT);
      await expect(page.getByLabel("Restore from").inputValue()).resolves.toBe(source);
      await expect(page.locator(`input[name="vm"][value="${vmUuid}"]`).isChecked()).resolves.toBe(true);
      await page.getByRole("form", { name: /^Restore .+ as a new VM$/ }).waitFor(WAIT);
    }
    await shootBoth(page, "06-linked-point");
  });

  it("says plainly when the linked restore point does not exist", async () => {
    const { page } = browser;
    for (const id of ["00000000-0000-4000-8000-000000000000", "not-an-id"]) {
      await page.goto(`/restore?point=${id}`);
      const alert = page.locator(`[data-missing-point="${id}"]`);
      await alert.waitFor(WAIT);
      await expect(alert.textContent()).resolves.toContain(`No restore point has the id “${id}”`);
      // The page still offers its sources.
      await page.getByLabel("Restore from").waitFor(WAIT);
    }
    await shootBoth(page, "07-unknown-point");
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
