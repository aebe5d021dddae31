/**
 * The dashboard while the Cairn server cannot be reached (issue 16, "Layout, states and reach"), in a real Chromium against
 * a real Cairn server: going offline, or /graphql getting no answer, keeps the page as it was under a banner that says so
 * in people's words (never "Internal Error", never the raw error); pages not yet visited still open; once the server
 * answers again the banner goes by itself, the page reloads its data (a job created meanwhile shows) and live updates
 * resume on a new socket (a run started afterwards shows on the Logs page without a reload). Screenshots at 1280 and
 * 390 px, with no sideways scroll, go to test-results/dashboard-offline/.
 */
import type { Page, WebSocket } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
/** Generous: a server and a browser share a busy 2-core machine, and the first automatic retry comes after 1 s. */
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-offline";
const VM = "eeeeeeee-0000-4000-8000-000000000001";

const shootBoth = (page: Page, name: string) => shootAtBothWidths(page, SHOTS, name);

const banner = (page: Page) => page.locator('[data-connection="unreachable"]');

/** Nothing on the page is SvelteKit's error page, and the banner carries no raw error. */
async function expectNoErrorPage(page: Page) {
  await expect(page.getByText("Internal Error").count()).resolves.toBe(0);
  await expect(page.getByText("Something went wrong").count()).resolves.toBe(0);
  await expect(page.getByRole("navigation", { name: "Sections" }).isVisible()).resolves.toBe(true);
}

async function expectBannerInPeoplesWords(page: Page) {
  await banner(page).waitFor(WAIT);
  const text = (await banner(page).textContent()) ?? "";
  expect(text).toMatch(/Cannot reach the Cairn server/);
  expect(text).toMatch(/Showing what was loaded at \d{1,2}[:.]\d{2}/);
  expect(text).not.toMatch(/fetch|Error|ERR_|NETWORK|at .*\.js/);
  await banner(page).getByRole("button", { name: "Retry now" }).waitFor();
}

describe.skipIf(skipReason)("the dashboard while the Cairn server cannot be reached", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let token: string;
  const ids: Record<string, string> = {};
  /** Operation names of the GraphQL requests the page sent, in order. */
  const operations: string[] = [];
  /** Every graphql-ws socket the page opened, with the subscriptions it sent. */
  const sockets: { socket: WebSocket; subscribed: string[]; closed: boolean }[] = [];

  beforeAll(async () => {
    ensureDashboardBuilt();
    server = await startTestCairn();
    const db = createPrismaClient(server.database.url);
    try {
      const remote = await db.remote.create({ data: { name: "nas", kind: "LOCAL", location: "/srv/nas" } });
      ids.remote = remote.id;
      const job = (name: string) =>
        db.job.create({
          data: {
            name,
            mode: "FULL",
            selection: { vmUuids: [VM] },
            srUuids: [],
            settings: {},
            remotes: { create: [{ remoteId: remote.id }] },
          },
        });
      const nightly = await job("nightly");
      const weekly = await job("weekly");
      ids.nightly = nightly.id;
      const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000);
      for (const [jobId, status, minutes] of [
        [nightly.id, "SUCCESS", 90],
        [weekly.id, "FAILURE", 60],
      ] as const) {
        const run = await db.run.create({
          data: {
            jobId,
            trigger: "SCHEDULE",
            status,
            createdAt: ago(minutes),
            startedAt: ago(minutes),
            endedAt: ago(minutes - 1),
            vmUuids: [VM],
            vmsTotal: 1,
          },
        });
        ids[status] = run.id;
      }
    } finally {
      await db.$disconnect();
    }
    token = await server.login();

    browser = await launchBrowser({ baseURL: server.url });
    const { page } = browser;
    page.on("request", (request) => {
      if (!request.url().endsWith("/graphql") || request.method() !== "POST") return;
      const name = (JSON.parse(request.postData() ?? "{}") as { operationName?: string }).operationName;
      operations.push(name ?? "(probe)");
    });
    page.on("websocket", (socket) => {
      const entry = { socket, subscribed: [] as string[], closed: false };
      sockets.push(entry);
      socket.on("framesent", ({ payload }) => {
        const message = JSON.parse(String(payload)) as { type: string; payload?: { query?: string } };
        const name = message.payload?.query?.match(/subscription\s+(\w+)/)?.[1];
        if (message.type === "subscribe" && name) entry.subscribed.push(name);
      });
      socket.on("close", () => (entry.closed = true));
    });
    await page.goto("/signin");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("link", { name: "Signed in as admin (ADMIN)" }).waitFor(WAIT);
  }, 300_000);

  /** A failed test must not leave the next one offline. */
  afterEach(async () => {
    await browser?.page.unroute("**/graphql");
    await browser?.context.setOffline(false);
  });

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("keeps the Jobs page under a banner while the browser is offline, and reloads it by itself once back", async () => {
    const { page, context } = browser;
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Jobs" }).click();
    await page.locator('tr[data-job="nightly"]').waitFor(WAIT);
    await page.locator('tr[data-job="weekly"]').waitFor();
    // The code of the pages the links lead to is loaded ahead, while the server answers.
    await page.waitForLoadState("networkidle");

    await context.setOffline(true);
    // The browser's own "offline" makes the dashboard ask the server at once: no request of the page has to fail first.
    await expectBannerInPeoplesWords(page);
    await expect(banner(page).textContent()).resolves.toContain("this browser is offline");
    await expect(page.locator("tr[data-job]").count()).resolves.toBe(2);
    await expectNoErrorPage(page);
    await shootBoth(page, "01-jobs-offline");

    // "Retry now" asks again; the server still cannot be reached, and the page stays as it was.
    const asked = operations.length;
    await banner(page).getByRole("button", { name: "Retry now" }).click();
    await banner(page).getByRole("button", { name: "Retry now" }).waitFor({ state: "visible" });
    await expect(page.locator('tr[data-job="nightly"]').isVisible()).resolves.toBe(true);
    await expectNoErrorPage(page);

    // Meanwhile, another Cairn process creates a job (written straight into the database, as it would).
    const db = createPrismaClient(server.database.url);
    try {
      await db.job.create({
        data: {
          name: "made-while-away",
          mode: "FULL",
          selection: { vmUuids: [VM] },
          srUuids: [],
          settings: {},
          remotes: { create: [{ remoteId: ids.remote! }] },
        },
      });
    } finally {
      await db.$disconnect();
    }

    await context.setOffline(false);
    await banner(page).waitFor({ state: "detached", ...WAIT });
    await page.locator('tr[data-job="made-while-away"]').waitFor(WAIT);
    await expect(page.locator("tr[data-job]").count()).resolves.toBe(3);
    expect(operations.slice(asked)).toContain("JobsOverview");
  });

  it("opens a page not visited yet while offline, and loads it once the server answers again", async () => {
    const { page, context } = browser;
    // Offline, nothing comes from the server, not even the code of a page: it was loaded ahead.
    await context.setOffline(true);
    await page.route("**/graphql", (route) => route.abort("connectionrefused"));
    await expectBannerInPeoplesWords(page);
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Remotes" }).click();
    await page.getByRole("heading", { name: "Remotes", level: 1 }).waitFor(WAIT);
    await expect(page.url()).toMatch(/\/remotes$/);
    await expectBannerInPeoplesWords(page);
    await expectNoErrorPage(page);
    await shootBoth(page, "02-remotes-offline");

    // Back online while the server is still down: still said so.
    await context.setOffline(false);
    await expect.poll(() => banner(page).textContent(), WAIT).not.toContain("offline");
    await expectBannerInPeoplesWords(page);

    // The server answers again; nobody clicks anything: the next automatic attempt finds it.
    await page.unroute("**/graphql");
    await banner(page).waitFor({ state: "detached", ...WAIT });
    await page.getByText("/srv/nas").first().waitFor(WAIT);
    await expectNoErrorPage(page);
  });

  it("resubscribes the Logs page's live updates by itself after the server was away", async () => {
    const { page, context } = browser;
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Logs" }).click();
    await page.locator(`tr[data-run="${ids.SUCCESS}"]`).waitFor(WAIT);
    const liveSocket = await expect
      .poll(() => sockets.find((s) => !s.closed && s.subscribed.includes("RunUpdated")), WAIT)
      .toBeDefined()
      .then(() => sockets.find((s) => !s.closed && s.subscribed.includes("RunUpdated"))!);

    await context.setOffline(true);
    await page.route("**/graphql", (route) => route.abort("internetdisconnected"));
    await expectBannerInPeoplesWords(page);
    // The socket is closed rather than trusted: it would look open long after the network under it is gone.
    await expect.poll(() => liveSocket.closed, WAIT).toBe(true);
    await expect(page.locator("tr[data-run]").count()).resolves.toBe(2);
    await expectNoErrorPage(page);
    await shootBoth(page, "03-logs-offline");

    const socketsBefore = sockets.length;
    const requestsBefore = operations.length;
    await page.unroute("**/graphql");
    await context.setOffline(false);
    await banner(page).waitFor({ state: "detached", ...WAIT });
    // A new socket subscribes again, and the page reloads what it missed meanwhile.
    await expect.poll(() => sockets.slice(socketsBefore).some((s) => !s.closed && s.subscribed.includes("RunUpdated")), WAIT).toBe(true);
    await expect.poll(() => operations.slice(requestsBefore).includes("Runs"), WAIT).toBe(true);
    await page.waitForLoadState("networkidle");

    // A run started now reaches the page over the new socket, with no reload of the list.
    const listLoads = operations.filter((name) => name === "Runs").length;
    const run = await server.graphql<{ runJob: { id: string } }>(
      `mutation($id: ID!) { runJob(id: $id) { id } }`,
      { id: ids.nightly },
      token,
    );
    expect(run.errors).toBeUndefined();
    await page.locator(`tr[data-run="${run.data!.runJob.id}"]`).waitFor(WAIT);
    expect(operations.filter((name) => name === "Runs").length).toBe(listLoads);
    await expect(banner(page).count()).resolves.toBe(0);
    await expectNoErrorPage(page);
  });

  it("reads a run page again once the server is back: a run that ended meanwhile shows as ended", async () => {
    const { page, context } = browser;
    const db = createPrismaClient(server.database.url);
    try {
      const running = await db.run.create({
        data: { jobId: ids.nightly, trigger: "MANUAL", status: "RUNNING", startedAt: new Date(), vmUuids: [VM], vmsTotal: 1 },
      });
      await page.goto(`/runs/${running.id}`);
      const status = page
        .locator("main")
        .getByText(/^(Running|Success)$/)
        .first();
      await expect.poll(() => status.textContent(), WAIT).toBe("Running");

      await context.setOffline(true);
      await page.route("**/graphql", (route) => route.abort("internetdisconnected"));
      await expectBannerInPeoplesWords(page);
      // It ends while the page cannot hear of it: no event will ever say so again.
      await db.run.update({ where: { id: running.id }, data: { status: "SUCCESS", endedAt: new Date(), progress: 1, vmsSucceeded: 1 } });
      await page.unroute("**/graphql");
      await context.setOffline(false);
      await banner(page).waitFor({ state: "detached", ...WAIT });
      await expect.poll(() => status.textContent(), WAIT).toBe("Success");
      await expectNoErrorPage(page);
    } finally {
      await db.$disconnect();
    }
  });

  it("says a page whose code could not be fetched cannot be opened because the server is away, and opens it once back", async () => {
    // A page opened in a new tab while the server goes away: its HTML came, the code of the page itself did not (the root
    // layout and the error page, nodes 0 and 1, did). SvelteKit then shows its error page, once "Internal Error".
    const page = await browser.context.newPage();
    const pageCode = /\/_app\/immutable\/nodes\/(?![01]\.)/;
    try {
      await page.route(pageCode, (route) => route.abort("connectionrefused"));
      await page.route("**/graphql", (route) => route.abort("connectionrefused"));
      await page.goto("/jobs");
      await page.getByRole("heading", { name: "Cannot reach the Cairn server" }).waitFor(WAIT);
      await expect(page.getByText("It opens by itself once the server answers again.").isVisible()).resolves.toBe(true);
      await expect(page.getByText("Internal Error").count()).resolves.toBe(0);
      await page.getByRole("button", { name: "Retry now" }).waitFor();
      await shootBoth(page, "04-page-code-unreachable");

      await page.unroute(pageCode);
      await page.unroute("**/graphql");
      await page.getByRole("heading", { name: "Jobs", level: 1 }).waitFor(WAIT);
      await page.locator('tr[data-job="nightly"]').waitFor(WAIT);
      await expect(page.getByText("Internal Error").count()).resolves.toBe(0);
    } finally {
      await page.close();
    }
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
