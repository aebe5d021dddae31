/**
 * GraphiQL served by Cairn itself at /graphiql: a real Chromium, signed out, is sent to the dashboard's sign-in page and back;
 * signed in, it runs a query with the dashboard's token and shows the answer. Every request stays on Cairn's origin (no CDN)
 * and the page runs under the dashboard's Content-Security-Policy without a single violation. Over HTTPS (TLS_CERT, TLS_KEY),
 * the dashboard signs in and GraphiQL receives a subscription's events over wss://.
 */
import { X509Certificate, createHash, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildGraphiqlIfStale } from "../../scripts/build-graphiql.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH, launchBrowser, screenshot, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { makeCertificate } from "../support/certificates.js";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);

/** The text of one of GraphiQL's CodeMirror editors (evaluated as a string: the tests' tsconfig has no DOM types). */
const editorValue = (selector: string) => `document.querySelector(${JSON.stringify(`${selector} .CodeMirror`)}).CodeMirror.getValue()`;

describe.skipIf(skipReason)("GraphiQL at /graphiql", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  const requests: string[] = [];

  beforeAll(async () => {
    // npm test builds both first; built here for a lone run of this file.
    ensureDashboardBuilt();
    await buildGraphiqlIfStale();
    server = await startTestCairn();
    browser = await launchBrowser({ baseURL: server.url });
    browser.context.on("request", (request) => requests.push(request.url()));
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
    ),
  );

  it("sends a visitor without a session to the sign-in page, and back to GraphiQL after signing in", async () => {
    const { page } = browser;
    const response = await page.goto("/graphiql");
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toMatch(/script-src 'self'/);
    await page.waitForURL("**/signin?next=%2Fgraphiql");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL("**/graphiql");
    await page.locator(".graphiql-query-editor .CodeMirror").waitFor();
  });

  it("runs { me { username } } and shows the answer", async () => {
    const { page } = browser;
    await page.evaluate(`document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue("{ me { username } }")`);
    await page.getByRole("button", { name: /Execute query/ }).click();
    const answer = await eventually(
      "GraphiQL to show the answer",
      async () => {
        const text = await page.evaluate<string>(editorValue(".graphiql-response"));
        if (!text.includes("username")) throw new Error(`response pane so far: ${JSON.stringify(text)}`);
        return text;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(JSON.parse(answer)).toEqual({ data: { me: { username: "admin" } } });
    await screenshot(page, "graphiql/01-answer");
  });

  it("loaded nothing from another origin and broke no rule of the CSP", () => {
    const origin = new URL(server.url).origin;
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith("ws://") && !url.startsWith("data:"))).toEqual([]);
    expect(requests).toContain(`${origin}/graphiql/graphiql.js`);
    expect(browser.cspViolations).toEqual([]);
  });
});

describe.skipIf(skipReason)("GraphiQL and the dashboard over HTTPS", () => {
  let dir: string;
  let server: TestCairn;
  let db: Db;
  let context: BrowserContext;
  const cspViolations: string[] = [];

  beforeAll(async () => {
    ensureDashboardBuilt();
    await buildGraphiqlIfStale();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-graphiql-tls-"));
    const { cert } = makeCertificate(dir, "cairn");
    server = await startTestCairn({ env: { TLS_CERT: path.join(dir, "cairn.crt"), TLS_KEY: path.join(dir, "cairn.key") } });
    db = createPrismaClient(server.database.url);
    // Chromium trusts exactly this certificate (by its public key), as a person who checked the fingerprint would.
    const spki = new X509Certificate(cert).publicKey.export({ type: "spki", format: "der" });
    context = await chromium.launchPersistentContext(path.join(dir, "profile"), {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${createHash("sha256").update(spki).digest("base64")}`],
      baseURL: server.url,
    });
    context.on("console", (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => context?.close(),
      () => db?.$disconnect(),
      () => server?.stop(),
      () => fs.rm(dir, { recursive: true, force: true }),
    ),
  );

  it("signs in to the dashboard and runs a subscription in GraphiQL over wss://", async () => {
    expect(server.url).toMatch(/^https:/);
    const page = context.pages()[0] ?? (await context.newPage());
    const sockets: string[] = [];
    page.on("websocket", (socket) => sockets.push(socket.url()));
    await page.goto("/graphiql");
    await page.waitForURL("**/signin?next=%2Fgraphiql");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL("**/graphiql");
    await page.locator(".graphiql-query-editor .CodeMirror").waitFor();

    const job = await db.job.create({
      data: { name: `job-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    const run = await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "PENDING" } });
    const subscription = `subscription { runUpdated(jobId: "${job.id}") { id status } }`;
    await page.evaluate(
      `document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(${JSON.stringify(subscription)})`,
    );
    await page.getByRole("button", { name: /Execute query/ }).click();
    // graphql-ws says nothing when a subscription is live: publish until the first event shows.
    const shown = await eventually(
      "GraphiQL to show the run's event",
      async () => {
        await server.cairn.services.events.publish({ type: "run", runId: run.id, jobId: job.id });
        const text = await page.evaluate<string>(editorValue(".graphiql-response"));
        if (!text.includes(run.id)) throw new Error(`response pane so far: ${JSON.stringify(text)}`);
        return text;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(JSON.parse(shown)).toEqual({ data: { runUpdated: { id: run.id, status: "PENDING" } } });
    expect(sockets).toEqual([`${server.url.replace(/^https/, "wss")}/graphql`]);
    await screenshot(page, "graphiql/02-subscription-over-wss");
    expect(cspViolations).toEqual([]);
  });
});
