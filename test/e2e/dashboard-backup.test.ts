/**
 * The backup pages end to end: a real Chromium against a real Cairn server with the lab, through the dashboard only.
 * Sign in, create a DELTA job with a schedule through the form (after the server refused a bad cron at its field), run
 * it, watch the run page reach SUCCESS without a reload, find the restore point on the Restore page, restore it onto
 * the lab's second SR and follow that run to SUCCESS, browse the point's files and download one (checked byte for byte
 * against server/lab/known-files.ts); then the main pages at a laptop size and a phone width, with no sideways scroll
 * and no blank strip under the content. Screenshots of every page go to test-results/dashboard-backup/ (light, plus a few in dark).
 */
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import tarStream from "tar-stream";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, screenshot, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { knownFiles } from "../../server/lab/known-files.js";
import { stopAll } from "../support/stop-all.js";

const skipReason = skipReasonForTools(["chromium"]);
const SHOTS = "dashboard-backup";

/** Marks the document; a reload would lose the mark (evaluated as strings: the tests' tsconfig has no DOM types). */
const markDocument = (page: Page) => page.evaluate(`window.__cairnNoReload = true`);
const documentMarked = (page: Page) => page.evaluate<boolean>(`window.__cairnNoReload === true`);

const NOTES = "/home/alice/notes.txt";

/** Restore page: the local remote, the VM web-ext4, its only restore point. */
async function chooseRestorePoint(page: Page) {
  await page.goto("/restore");
  const remote = await page.locator("#restore-remote option", { hasText: "local" }).getAttribute("value");
  await page.getByLabel("Restore from").selectOption(remote!);
  await page.getByRole("radio", { name: /web-ext4/ }).check();
  const points = page.locator("tr[data-restore-point]");
  await points.first().waitFor();
  await expect(points.count()).resolves.toBe(1);
  await points.first().getByRole("radio").check();
}

/** Files of a tar.gz: path -> bytes. */
async function untarGz(body: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: unknown) => void chunks.push(chunk as Buffer));
      stream.on("end", () => {
        if (header.type === "file") files.set(`/${header.name.replace(/^\/+/, "")}`, Buffer.concat(chunks));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([gunzipSync(body)]).pipe(extract);
  await done;
  return files;
}

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
    ensureDashboardBuilt();
    server = await startTestCairn({ lab: true });
    browser = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

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
    await page
      .locator("#schedule-0-cron-error")
      .filter({ hasText: /more than once a minute/ })
      .waitFor();
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

  it("restores the restore point onto the second SR and follows that run to SUCCESS", async () => {
    const { page } = browser;
    await chooseRestorePoint(page);
    const pool = await page.locator("#restore-pool option:not([disabled])").first().getAttribute("value");
    await page.getByLabel("Pool", { exact: true }).selectOption(pool!);
    const second = await page.locator("#restore-sr option", { hasText: "Second storage" }).getAttribute("value");
    await page.getByLabel("SR", { exact: true }).selectOption(second!);
    await page.getByLabel("Name", { exact: true }).fill("web-ext4 restored by the e2e test");
    await screenshot(page, `${SHOTS}/08-restore-steps`);

    await page.getByRole("button", { name: "Restore" }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, { timeout: 30_000 });
    await page.getByRole("heading", { name: "Tasks" }).waitFor();
    await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 120_000 });
    await expect(page.locator('li[data-task-kind][data-status="FAILURE"]').count()).resolves.toBe(0);
    await screenshot(page, `${SHOTS}/09-restore-success`);

    const restored = await server.graphql<{ vms: { name: string; tags: string[] }[] }>(
      `{ vms(search: "restored by the e2e") { name tags } }`,
      {},
      await server.login(),
    );
    expect(restored.data?.vms).toEqual([{ name: "web-ext4 restored by the e2e test", tags: expect.arrayContaining(["cairn:restored"]) }]);
    // Bounded by the waits above (30 s + 120 s), not by the default 60 s: a restore on a busy machine may take a minute.
  }, 240_000);

  it("browses the restore point's files and downloads one, equal byte for byte", async () => {
    const { page } = browser;
    await chooseRestorePoint(page);
    await page.getByRole("radio", { name: /Files and folders/ }).check();
    await page.getByRole("table", { name: "Files in /" }).waitFor();
    for (const name of ["etc", "home", "var"]) await page.getByRole("button", { name: `Open folder ${name}` }).waitFor();
    await page.locator('tr[data-file-entry="/README.txt"]').waitFor();
    await screenshot(page, `${SHOTS}/10-files-root`);

    await page.getByRole("button", { name: "Open folder home" }).click();
    await page.getByRole("button", { name: "Open folder alice" }).click();
    await page.getByRole("table", { name: "Files in /home/alice" }).waitFor();
    await page.getByRole("checkbox", { name: "Select notes.txt" }).check();
    await page.getByRole("navigation", { name: "Folder" }).getByRole("button", { name: "/" }).click();
    await page.getByRole("table", { name: "Files in /" }).waitFor();
    await page.getByText("1 selected:").waitFor();
    await screenshot(page, `${SHOTS}/11-files-selected`);

    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
    expect(download.suggestedFilename()).toMatch(/^web-ext4-disk0-files\.tar\.gz$/);
    const files = await untarGz(await readFile((await download.path())!));
    expect([...files.keys()]).toEqual([NOTES]);
    expect(files.get(NOTES)!.equals(knownFiles("cairn").ext4.get(NOTES)!)).toBe(true);
    await page
      .getByRole("status")
      .filter({ hasText: /has started/ })
      .waitFor();
    await screenshot(page, `${SHOTS}/12-files-downloaded`);
    // The link was for one download only.
    const again = await page.evaluate<number, string>(async (url) => (await fetch(url)).status, new URL(download.url()).pathname);
    expect(again).toBe(404);
  });

  it("tests a remote and shows the measured speeds", async () => {
    const { page } = browser;
    await page.goto("/remotes");
    const row = page.locator('tr[data-remote="local"]');
    await row.getByRole("button", { name: "Test" }).click();
    await row
      .getByTestId("last-test")
      .filter({ hasText: /write .+\/s, read .+\/s/ })
      .waitFor();
    await expect(row.locator("td").nth(4).textContent()).resolves.toMatch(/[1-9]/); // restore point count
    await page.getByRole("button", { name: "Add a remote" }).click();
    await page.getByLabel("Kind").selectOption("S3");
    await page.getByLabel("Secret key").waitFor();
    await screenshot(page, `${SHOTS}/13-remotes`);
  });

  it("lists the lab pool as connected", async () => {
    const { page } = browser;
    await page.goto("/pools");
    await page.locator("tr[data-pool]").first().getByText("Connected").waitFor();
    await screenshot(page, `${SHOTS}/14-pools`);
  });

  it("lays the main pages out at a laptop size and at a phone width: no sideways scroll, no blank strip below", async () => {
    const { page } = browser;
    const pages: [string, string][] = [
      ["overview", "/"],
      ["logs", "/logs"],
      ["jobs", "/jobs"],
      ["job", `/jobs/${jobId}`],
      ["new-job", "/jobs/new"],
      ["run", `/runs/${runId}`],
      ["remotes", "/remotes"],
      ["pools", "/pools"],
      ["restore", "/restore"],
    ];
    const problems: string[] = [];
    for (const viewport of [
      { width: 1280, height: 800 },
      { width: 390, height: 844 },
    ]) {
      await page.setViewportSize(viewport);
      const check = async (name: string) => {
        await page.locator("h1").first().waitFor();
        // Polled from the test, not waitForFunction: that evaluates a string in the page, which the dashboard's CSP forbids.
        await expect.poll(() => page.locator('[aria-busy="true"]').count(), { timeout: 30_000 }).toBe(0);
        await screenshot(page, `${SHOTS}/sizes/${viewport.width}-${name}`);
        // Evaluated as a string: the tests' tsconfig has no DOM types.
        const layout = await page.evaluate<{ overflow: number; strip: number; below: string[] }>(`(() => {
          const root = document.documentElement;
          const end = Math.max(innerHeight, document.querySelector(".shell").getBoundingClientRect().bottom + scrollY);
          const below = [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().bottom + scrollY > end + 1)
            .map((el) => el.tagName.toLowerCase() + "." + [...el.classList].join("."));
          return { overflow: root.scrollWidth - innerWidth, strip: root.scrollHeight - Math.ceil(end), below };
        })()`);
        if (layout.overflow > 0) problems.push(`${viewport.width}px ${name}: ${layout.overflow}px wider than the window`);
        if (layout.strip > 1)
          problems.push(`${viewport.width}px ${name}: ${layout.strip}px below the content (${layout.below.slice(0, 5).join(", ")})`);
      };
      for (const [name, path] of pages) {
        await page.goto(path);
        await check(name);
      }
      await chooseRestorePoint(page);
      await page.getByRole("radio", { name: /Files and folders/ }).check();
      await page.getByRole("table", { name: "Files in /" }).waitFor();
      await check("restore-files");
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    expect(problems).toEqual([]);
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
      await screenshot(page, `${SHOTS}/15-jobs-viewer-dark`);
      await page.goto(`/runs/${runId}`);
      await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor();
      await expect(page.getByRole("button", { name: "Cancel run" }).count()).resolves.toBe(0);
      await screenshot(page, `${SHOTS}/16-run-dark`);
      await page.goto("/");
      await page.locator('tr[data-job="nightly-delta"]').waitFor();
      await screenshot(page, `${SHOTS}/17-overview-dark`);
      await page.goto("/remotes");
      await page.locator('tr[data-remote="local"]').waitFor();
      await expect(page.getByRole("button", { name: "Test" }).count()).resolves.toBe(0);
    } finally {
      await viewer.close();
    }
  });

  it("explains on a full (XVA) restore point that file-level restore needs a delta backup", async () => {
    const token = await server.login();
    const found = await server.graphql<{ vms: { uuid: string; name: string }[]; remotes: { id: string; name: string }[] }>(
      `{ vms(search: "web-ext4") { uuid name } remotes { id name } }`,
      {},
      token,
    );
    const vm = found.data!.vms.find((v) => v.name === "web-ext4")!;
    const local = found.data!.remotes.find((r) => r.name === "local")!;
    const created = await server.graphql<{ createJob: { id: string } }>(
      `mutation($input: JobInput!) { createJob(input: $input) { id } }`,
      {
        input: {
          name: "full-once",
          mode: "FULL",
          selection: { vmUuids: [vm.uuid] },
          remoteIds: [local.id],
          schedules: [{ cron: "0 4 1 1 *", exportRetention: 2 }],
        },
      },
      token,
    );
    const run = await server.graphql<{ runJob: { id: string } }>(
      `mutation($id: ID!) { runJob(id: $id) { id } }`,
      { id: created.data!.createJob.id },
      token,
    );
    const { page } = browser;
    await page.goto(`/runs/${run.data!.runJob.id}`);
    await page.getByTestId("run-status").locator('[data-status="SUCCESS"]').waitFor({ timeout: 60_000 });

    await page.goto("/restore");
    const remote = await page.locator("#restore-remote option", { hasText: "local" }).getAttribute("value");
    await page.getByLabel("Restore from").selectOption(remote!);
    await page.getByRole("radio", { name: /^web-ext4 2 restore points/ }).check();
    await page.locator("tr[data-restore-point]", { hasText: "Full (XVA)" }).getByRole("radio").check();
    // File-level restore is not offered for it: the page says why instead.
    await page
      .locator("[data-no-file-restore]")
      .filter({ hasText: /only be restored from a delta backup \(VHD\) on a remote; this restore point is a full backup \(XVA\)/ })
      .waitFor();
    await expect(page.getByRole("radio", { name: /Files and folders/ }).count()).resolves.toBe(0);
    await expect(page.getByRole("table", { name: /^Files in/ }).count()).resolves.toBe(0);
    await expect(page.getByRole("button", { name: "Download" }).count()).resolves.toBe(0);
    await screenshot(page, `${SHOTS}/18-files-xva-explained`);
  });

  it("ran every page above under its Content-Security-Policy without a violation, with the protective headers set", async () => {
    const page = await fetch(`${server.url}/jobs`);
    expect(page.headers.get("content-security-policy")).toMatch(/script-src 'self' 'sha256-/);
    expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(page.headers.get("x-frame-options")).toBe("DENY");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
    expect(browser.cspViolations).toEqual([]);
  });
});
