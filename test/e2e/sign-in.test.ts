/**
 * Sign-in end to end: a real Chromium against a real Cairn server (its own database, the lab, and the dashboard build served
 * by the server itself), through the form, with the admin password. Screenshots go to test-results/sign-in/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, screenshot, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { stopAll } from "../support/stop-all.js";

const skipReason = skipReasonForTools(["chromium"]);

/** The token the dashboard keeps (evaluated as a string: the tests' tsconfig has no DOM types). */
const storedToken = (page: Page) => page.evaluate<string | null>(`localStorage.getItem("cairn.token")`);

describe.skipIf(skipReason)("signing in to the dashboard served by a real Cairn server", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let signedInToken: string | null = null;

  beforeAll(async () => {
    // The server serves dashboard/build when it exists (npm test builds it first); build it for a lone run of this file.
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

  it("serves the dashboard and sends a visitor to the sign-in form", async () => {
    const { page } = browser;
    const response = await page.goto("/");
    expect(response?.status()).toBe(200);
    await page.waitForURL("**/signin");
    await page.getByRole("heading", { name: "Sign in to Cairn" }).waitFor();
    await screenshot(page, "sign-in/01-form");
  });

  it("shows the server's own message after a wrong password, and stays signed out", async () => {
    const { page } = browser;
    const expected = await server.graphql('mutation { login(username: "admin", password: "not-the-password") { token } }');
    const message = expected.errors?.[0]?.message;
    expect(message).toBeTruthy();
    expect(expected.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");

    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill("not-the-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: message! }).waitFor();
    await expect(page.getByRole("alert").textContent()).resolves.toContain(message);
    expect(page.url()).toMatch(/\/signin$/);
    await expect(storedToken(page)).resolves.toBeNull();
    await screenshot(page, "sign-in/02-wrong-password");
  });

  it("signs in through the form with the admin password and shows who is signed in", async () => {
    const { page } = browser;
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Signed in as admin (ADMIN)").waitFor();
    expect(new URL(page.url()).pathname).toBe("/");

    // The token the browser holds is a real session of this server.
    signedInToken = await storedToken(page);
    expect(signedInToken).toBeTruthy();
    const me = await server.graphql<{ me: { username: string; role: string } }>("{ me { username role } }", {}, signedInToken!);
    expect(me.data?.me).toEqual({ username: "admin", role: "ADMIN" });
    await screenshot(page, "sign-in/03-signed-in");
  });

  it("stays signed in after a reload (the server confirms the token)", async () => {
    const { page } = browser;
    await page.reload();
    await page.getByText("Signed in as admin (ADMIN)").waitFor();
  });

  it("signs out back to the form and forgets the token", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL("**/signin");
    await page.getByRole("heading", { name: "Sign in to Cairn" }).waitFor();
    await expect(storedToken(page)).resolves.toBeNull();
    // Back to a protected page: sent to sign in again.
    await page.goto("/jobs");
    await page.waitForURL("**/signin?next=%2Fjobs");
    await screenshot(page, "sign-in/04-signed-out");
  });

  it("ends the session on the server when signing out (the old token no longer works)", async () => {
    const me = await server.graphql("{ me { username } }", {}, signedInToken!);
    expect(me.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });
});
