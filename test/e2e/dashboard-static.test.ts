/**
 * The built dashboard in a real Chromium, served the way the Cairn server serves it (express.static with
 * `extensions: ["html"]`, then `200.html` for any other path).
 *
 * Until test/support/cairn-server.ts starts the real server, `/graphql` here is a stub that answers the two
 * operations of the API contract the sign-in needs (`login`, `me`) over real HTTP: it proves the static
 * build, the SPA fallback, the browser side of the client (headers, JSON, errors) and the session flow.
 * The full end-to-end sign-in against the real server replaces the stub then.
 */
import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { fileURLToPath } from "node:url";
import express from "express";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, screenshot, type LaunchedBrowser } from "../support/browser.js";
import { skipReasonForTools } from "../support/system-tools.js";

const buildDir = fileURLToPath(new URL("../../dashboard/build/", import.meta.url));
const skipReason = skipReasonForTools(["chromium"]);

const admin = { id: "1", username: "admin", role: "ADMIN" };
const PASSWORD = "correct horse battery staple";
const TOKEN = "stub-token";

/** The token the dashboard keeps (evaluated as a string: the tests' tsconfig has no DOM types). */
const storedToken = (page: Page) => page.evaluate<string | null>(`localStorage.getItem("cairn.token")`);

type GraphQLBody = { operationName?: string; variables?: Record<string, unknown> };

/** Answers as the API contract says: data, or errors with extensions.code. */
function stubGraphQL(body: GraphQLBody, authorization: string | undefined) {
  const unauthenticated = (message: string) => ({ errors: [{ message, extensions: { code: "UNAUTHENTICATED" } }] });
  switch (body.operationName) {
    case "Login":
      return body.variables?.username === "admin" && body.variables?.password === PASSWORD
        ? { data: { login: { token: TOKEN, user: admin } } }
        : unauthenticated("Invalid username or password");
    case "Me":
      return authorization === `Bearer ${TOKEN}` ? { data: { me: admin } } : unauthenticated("Your session has expired");
    default:
      return { errors: [{ message: `The stub knows no ${body.operationName}`, extensions: { code: "BAD_USER_INPUT" } }] };
  }
}

describe.skipIf(skipReason)("the built dashboard, served statically", () => {
  let server: Server;
  let browser: LaunchedBrowser;
  const graphqlRequests: { operationName?: string; contentType?: string }[] = [];

  beforeAll(async () => {
    if (!existsSync(`${buildDir}200.html`)) {
      throw new Error(`No dashboard build at ${buildDir}: run npm run build:dashboard (npm test does it first).`);
    }
    const app = express();
    app.post("/graphql", express.json(), (req, res) => {
      graphqlRequests.push({ operationName: req.body?.operationName, contentType: req.get("content-type") });
      res.json(stubGraphQL(req.body ?? {}, req.get("authorization")));
    });
    app.use(express.static(buildDir, { extensions: ["html"] }));
    app.use((_req, res) => res.sendFile("200.html", { root: buildDir }));
    server = await new Promise<Server>((resolve) => {
      const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
    });
    const { port } = server.address() as AddressInfo;
    browser = await launchBrowser({ baseURL: `http://127.0.0.1:${port}` });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it("sends a visitor without a session from / to the sign-in form", async () => {
    const { page } = browser;
    await page.goto("/");
    await page.waitForURL("**/signin");
    await expect(page.getByRole("heading", { name: "Sign in to Cairn" }).isVisible()).resolves.toBe(true);
    await expect(page.getByLabel("Username").isVisible()).resolves.toBe(true);
    await expect(page.getByLabel("Password").isVisible()).resolves.toBe(true);
    await screenshot(page, "dashboard-static/01-sign-in");
  });

  it("serves client routes: a section's prerendered shell, and 200.html for any other path", async () => {
    const { page } = browser;
    const jobs = await page.goto("/jobs");
    expect(jobs?.status()).toBe(200);
    await page.waitForURL("**/signin?next=%2Fjobs");

    const unknown = await page.goto("/runs/0f6c1d0e");
    expect(unknown?.status()).toBe(200);
    await page.getByRole("heading", { name: "Page not found" }).waitFor();
    await screenshot(page, "dashboard-static/02-not-found");
  });

  it("shows the server's error at the form after a wrong password", async () => {
    const { page } = browser;
    await page.goto("/signin?next=%2Fjobs");
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill("wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toContain("Invalid username or password");
    expect(graphqlRequests.at(-1)).toEqual({ operationName: "Login", contentType: "application/json" });
    await screenshot(page, "dashboard-static/03-sign-in-error");
  });

  it("signs in with the keyboard alone and lands on the page it came for, in the signed-in shell", async () => {
    const { page } = browser;
    await page.goto("/signin?next=%2Fjobs");
    await page.getByLabel("Username").waitFor();
    await page.keyboard.press("Tab");
    await page.keyboard.type("admin");
    await page.keyboard.press("Tab");
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press("Enter");

    await page.waitForURL("**/jobs");
    await page.getByText("Signed in as admin (ADMIN)").waitFor();
    // The Jobs page itself (its data is the real server's business, see dashboard-backup.test.ts; this stub refuses it).
    await expect(page.getByRole("heading", { name: "Jobs", level: 1 }).isVisible()).resolves.toBe(true);
    await expect(page.getByRole("link", { name: "Jobs" }).getAttribute("aria-current")).resolves.toBe("page");
    await expect(storedToken(page)).resolves.toBe(TOKEN);
    await screenshot(page, "dashboard-static/04-jobs-light");
  });

  it("stays signed in after a reload, asking the server who the token belongs to", async () => {
    const { page } = browser;
    const before = graphqlRequests.length;
    await page.goto("/restore");
    await page.getByText("Signed in as admin (ADMIN)").waitFor();
    // The first request after the reload asks who the token belongs to (the page's own queries follow).
    expect(graphqlRequests[before]?.operationName).toBe("Me");

    await page.emulateMedia({ colorScheme: "dark" });
    await screenshot(page, "dashboard-static/05-restore-dark");
    await page.setViewportSize({ width: 390, height: 760 });
    await screenshot(page, "dashboard-static/06-restore-dark-narrow");
    await page.emulateMedia({ colorScheme: "light" });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it("signs out back to the sign-in form and forgets the token", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL("**/signin");
    await expect(storedToken(page)).resolves.toBeNull();
  });

  it("sends a stale token back to sign-in, to return afterwards", async () => {
    const { page } = browser;
    await page.evaluate(`localStorage.setItem("cairn.token", "revoked")`);
    await page.goto("/logs");
    await page.waitForURL("**/signin?next=%2Flogs");
    await expect(storedToken(page)).resolves.toBeNull();
  });
});
