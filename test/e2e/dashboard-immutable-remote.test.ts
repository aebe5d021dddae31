/**
 * Immutable remotes in the dashboard, end to end: a real Cairn server (no lab) serving the built dashboard, a headless
 * Chromium signed in as the admin, and a LOCAL remote in a temporary folder (Cairn runs as root here, on ext4). The remote
 * form's "Immutable for N days" creates the remote with its window, the list says so in words, a backup written to the
 * folder through the repository (as a job would) and indexed by scanRemote shows on its VM's page with a lock and
 * "immutable until <date>", and a window on an SMB share is refused at the field. The folder is released (`chattr -R -i`)
 * before it is removed. Screenshots go to test-results/dashboard-immutable-remote/.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, realpath, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import { describeAxeViolations, seriousAxeViolations } from "../support/axe.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, signInThroughPage, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { MiB, SimulatedDisk, writeDeltaBackup } from "../repository/support/fixtures.js";

const skipReason = skipReasonForTools(["chromium", "chattr"]);
const SHOTS = "dashboard-immutable-remote";
const WINDOW_DAYS = 7;
/** Generous: a browser and a server share a busy 2-core machine. */
const WAIT = { timeout: 30_000 };

describe.skipIf(skipReason)("immutable remotes in the dashboard of a real Cairn server", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let folder: string;

  beforeAll(async () => {
    // The server serves dashboard/build when it exists (npm test builds it first); build it for a lone run of this file.
    ensureDashboardBuilt();
    folder = await realpath(await mkdtemp(path.join(os.tmpdir(), "cairn-immutable-remote-")));
    server = await startTestCairn();
    browser = await launchBrowser({ baseURL: server.url });
    await signInThroughPage(browser.page, "admin", ADMIN_PASSWORD);
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
      async () => {
        if (!folder) return;
        execFileSync("chattr", ["-R", "-i", folder]);
        await rm(folder, { recursive: true, force: true });
      },
    ),
  );

  it("creates a LOCAL remote immutable for 7 days, lists it so, and shows a lock on its restore point", async () => {
    const { page } = browser;
    await page.goto("/remotes");
    await page.getByRole("button", { name: "Add a remote" }).click();
    const form = page.getByRole("form", { name: "Add a remote" });
    await form.getByLabel("Name").fill("vault");
    await form.getByLabel("Folder").fill(folder);
    await form.getByLabel("Immutable for N days").fill(String(WINDOW_DAYS));
    await form.getByText("needs Cairn running as root on a local folder").waitFor(WAIT);
    const violations = await seriousAxeViolations(page);
    expect(violations, describeAxeViolations("the remote form with a window", violations)).toEqual([]);
    await shootAtBothWidths(page, SHOTS, "01-add-immutable-remote");

    await form.getByRole("button", { name: "Add remote", exact: true }).click();
    const row = page.locator('tr[data-remote="vault"]');
    await row.getByText(`Immutable for ${WINDOW_DAYS} days`, { exact: true }).waitFor(WAIT);
    await shootAtBothWidths(page, SHOTS, "02-list-with-immutable-remote");

    // A backup as a job writes it (the repository's writer on a remote with the same window), then indexed by a scan.
    const token = await server.login();
    const remotes = await server.graphql(`{ remotes { id name immutabilityDays } }`, {}, token);
    const vault = remotes.data.remotes.find((remote: { name: string }) => remote.name === "vault");
    expect(vault.immutabilityDays).toBe(WINDOW_DAYS);
    const storage = new LocalRemote(folder);
    storage.immutabilityDays = WINDOW_DAYS;
    const vmUuid = randomUUID();
    const timestamp = Math.floor((Date.now() - 3_600_000) / 1000) * 1000;
    await writeDeltaBackup(storage, {
      vmUuid,
      jobId: randomUUID(),
      scheduleId: randomUUID(),
      timestamp,
      kind: "full",
      disks: [new SimulatedDisk(randomUUID(), 2 * MiB, 7)],
    });
    const scanned = await server.graphql(`mutation($id: ID!) { scanRemote(id: $id) }`, { id: vault.id }, token);
    expect(scanned.errors, JSON.stringify(scanned.errors)).toBeUndefined();
    expect(scanned.data.scanRemote).toBe(1);
    const points = await server.graphql(
      `query($vm: String!) { restorePoints(filter: { vmUuid: $vm }) { nodes { id immutableUntil } } }`,
      { vm: vmUuid },
      token,
    );
    const until = points.data.restorePoints.nodes[0].immutableUntil as string;
    expect(Date.parse(until)).toBe(timestamp + WINDOW_DAYS * 24 * 3_600_000);

    await page.goto(`/vms/${vmUuid}`);
    const mark = page.locator(`[data-immutable-until="${until}"]`);
    await page.getByRole("heading", { name: "Restore points" }).waitFor(WAIT);
    await mark.waitFor(WAIT);
    expect((await mark.textContent())?.trim()).toMatch(/^immutable until \S/);
    await expect(mark.locator("svg").count()).resolves.toBe(1);
    const pageViolations = await seriousAxeViolations(page);
    expect(pageViolations, describeAxeViolations("the VM page with an immutable point", pageViolations)).toEqual([]);
    await shootAtBothWidths(page, SHOTS, "03-vm-page-immutable-point");
  });

  it("refuses a window on an SMB share at its field, saying why", async () => {
    const { page } = browser;
    await page.goto("/remotes");
    await page.getByRole("button", { name: "Add a remote" }).click();
    const form = page.getByRole("form", { name: "Add a remote" });
    await form.getByLabel("Name").fill("nas");
    await form.getByLabel("Kind").selectOption("SMB");
    await form.getByLabel("Share").fill("//nas.example.net/backups");
    await form.getByLabel("User").fill("backup");
    await form.getByLabel("Password").fill("secret");
    await form.getByLabel("Immutable for N days").fill("30");
    await form.getByRole("button", { name: "Add remote", exact: true }).click();
    await form.locator("#remote-immutabilityDays-error").getByText("Cairn cannot make files immutable over NFS/SMB").waitFor(WAIT);
  });
});
