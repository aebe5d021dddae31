/**
 * A mirror job through the dashboard, against a real Cairn server with the lab: a DELTA job (made through the API) backs
 * web-ext4 up to the local remote; the job form then creates a MIRROR job copying that remote to a second one (mode,
 * source remote, target remote, every VM of the source), the job page names the source, and Run now reaches SUCCESS with
 * the copy listed as a restore point of the second remote. No page scrolls sideways at 390 px; screenshots at both widths
 * go to test-results/dashboard-mirror-job/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, shootAtBothWidths, signInThroughPage, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const SHOTS = "dashboard-mirror-job";

describe.skipIf(skipReason)("a mirror job created and run through the dashboard", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let token: string;
  let offsiteId: string;
  let localId: string;

  async function api<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const result = await server.graphql<T>(query, variables, token);
    if (result.errors) throw new Error(JSON.stringify(result.errors));
    return result.data as T;
  }

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn({ lab: true, env: { LAB_DISK_MB: "8" } });
    token = await server.login();
    const offsiteDir = join(server.dataDir, "offsite");
    mkdirSync(offsiteDir, { recursive: true });
    offsiteId = (
      await api<{ createRemote: { id: string } }>("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
        i: { name: "offsite", kind: "LOCAL", location: offsiteDir },
      })
    ).createRemote.id;
    const { remotes, vms } = await api<{ remotes: { id: string; name: string }[]; vms: { uuid: string; name: string }[] }>(
      "{ remotes { id name } vms { uuid name } }",
    );
    localId = remotes.find((r) => r.name === "local")!.id;
    const web = vms.find((vm) => vm.name === "web-ext4")!;
    const { createJob } = await api<{ createJob: { id: string } }>("mutation($i: JobInput!) { createJob(input: $i) { id } }", {
      i: { name: "source-delta", mode: "DELTA", selection: { vmUuids: [web.uuid] }, remoteIds: [localId], schedules: [] },
    });
    const { runJob } = await api<{ runJob: { id: string } }>("mutation($id: ID!) { runJob(id: $id) { id } }", { id: createJob.id });
    await eventually(
      "the source backup to succeed",
      async () => {
        const { run } = await api<{ run: { status: string; error: string | null } }>("query($id: ID!) { run(id: $id) { status error } }", {
          id: runJob.id,
        });
        if (!["PENDING", "RUNNING", "SUCCESS"].includes(run.status)) throw new Error(`the source backup ended ${run.status}: ${run.error}`);
        return run.status === "SUCCESS";
      },
      { timeoutMs: 120_000, stopWhen: (error) => String(error).includes("the source backup ended") },
    );
    browser = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("creates a mirror job in the form, runs it, and the run succeeds with the copy on the target", { timeout: 300_000 }, async () => {
    const { page } = browser;
    await signInThroughPage(page, "admin", ADMIN_PASSWORD);
    await page.goto("/jobs/new");
    await page.getByRole("heading", { name: "New job" }).waitFor();
    await page.getByLabel("Name", { exact: true }).first().fill("offsite-mirror");
    await page.getByRole("radio", { name: /^Mirror/ }).check();
    await page.getByText("None picked: every VM the source remote holds is mirrored.").waitFor();
    await expect(page.getByRole("radio", { name: /Smart pattern/ }).count()).resolves.toBe(0);

    // Without a source, the server's refusal shows at the source field.
    await page.getByRole("checkbox", { name: /^offsite/ }).check();
    await page.getByRole("button", { name: "Create job" }).click();
    await page
      .locator(".field-error")
      .filter({ hasText: /needs a source remote/ })
      .waitFor();
    await page.getByLabel("Source remote").selectOption(localId);
    await shootAtBothWidths(page, SHOTS, "01-mirror-form");
    await page.getByRole("button", { name: "Create job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    const jobId = page.url().split("/").pop()!;
    await page.getByRole("heading", { name: "offsite-mirror" }).waitFor();
    await page.locator("[data-job-source]").filter({ hasText: "mirrors remote local" }).waitFor();
    await shootAtBothWidths(page, SHOTS, "02-mirror-job-page");
    const saved = await api<{ job: any }>("query($id: ID!) { job(id: $id) { mode sourceRemote { name } remotes { name } } }", {
      id: jobId,
    });
    expect(saved.job).toEqual({ mode: "MIRROR", sourceRemote: { name: "local" }, remotes: [{ name: "offsite" }] });

    await page.getByRole("button", { name: "Run now" }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 120_000 });
    await page.locator('li[data-task-kind="vm"]').filter({ hasText: "web-ext4" }).waitFor();
    await page.locator('li[data-task-kind="copy"]').first().waitFor();
    await expect(page.locator('li[data-task-kind][data-status="FAILURE"]').count()).resolves.toBe(0);
    await shootAtBothWidths(page, SHOTS, "03-mirror-run");
    const copies = await api<{ restorePoints: { nodes: { vmName: string }[] } }>(
      "query($f: RestorePointFilter) { restorePoints(filter: $f) { nodes { vmName } } }",
      { f: { remoteId: offsiteId } },
    );
    expect(copies.restorePoints.nodes).toEqual([{ vmName: "web-ext4" }]);
  });
});
