/**
 * Users, your account and the audit log end to end: a real Cairn server (its own database, the dashboard build it serves
 * under its Content-Security-Policy) and two headless Chromiums, one signed in as the admin and one as a user the admin
 * creates. Screenshots go to test-results/dashboard-admin/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, screenshot, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);

const OPERATOR = "olive.operator";
const INITIAL_PASSWORD = "olive-initial-password";
const NEW_PASSWORD = "olive-changed-password";
/** Generous: two browsers and a server share a busy 2-core machine. */
const WAIT = { timeout: 30_000 };

/** The token the dashboard keeps (evaluated as a string: the tests' tsconfig has no DOM types). */
const storedToken = (page: Page) => page.evaluate<string | null>(`localStorage.getItem("cairn.token")`);
const path = (page: Page) => new URL(page.url()).pathname;

async function signIn(page: Page, username: string, password: string, role: string) {
  await page.goto("/signin");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: `Signed in as ${username} (${role})` }).waitFor(WAIT);
}

describe.skipIf(skipReason)("users, accounts and the audit log in the dashboard of a real Cairn server", () => {
  let server: TestCairn;
  let admin: LaunchedBrowser;
  let operator: LaunchedBrowser;

  beforeAll(async () => {
    // The server serves dashboard/build when it exists (npm test builds it first); build it for a lone run of this file.
    ensureDashboardBuilt();
    server = await startTestCairn();
    admin = await launchBrowser({ baseURL: server.url });
    operator = await launchBrowser({ baseURL: server.url });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => operator?.close(),
      () => admin?.close(),
      () => server?.stop(),
    ),
  );

  it("lets the admin create an OPERATOR user on the Users page", async () => {
    const { page } = admin;
    await signIn(page, "admin", ADMIN_PASSWORD, "ADMIN");
    const nav = page.getByRole("navigation", { name: "Sections" });
    await page.getByRole("link", { name: "Users" }).click();
    await page.waitForURL("**/users");
    await expect(nav.getByRole("link", { name: "Users" }).getAttribute("aria-current")).resolves.toBe("page");
    await page.locator('tr[data-user="admin"]').waitFor(WAIT);

    await page.getByRole("button", { name: "Add a user" }).click();
    await page.getByLabel("User name").fill(OPERATOR);
    await page.getByLabel("Role", { exact: true }).selectOption("OPERATOR");
    await page.getByLabel("Initial password", { exact: true }).fill(INITIAL_PASSWORD);
    await page.getByLabel("Initial password again").fill(INITIAL_PASSWORD);
    await page.getByRole("button", { name: "Add user" }).click();
    await page.getByText(`${OPERATOR} was added as OPERATOR.`).waitFor(WAIT);
    const row = page.locator(`tr[data-user="${OPERATOR}"]`);
    await expect(row.getByLabel(`Role of ${OPERATOR}`).inputValue()).resolves.toBe("OPERATOR");
    await screenshot(page, "dashboard-admin/01-users");
  });

  it("shows the server's refusal to disable the last ADMIN in words", async () => {
    const { page } = admin;
    const row = page.locator('tr[data-user="admin"]');
    await row.getByRole("button", { name: "Disable" }).click();
    await row.getByRole("group").getByRole("button", { name: "Disable" }).click();
    await row.getByRole("alert").filter({ hasText: "is the last enabled ADMIN" }).waitFor(WAIT);
    await row.getByRole("button", { name: "Cancel" }).click();
    const users = await server.graphql<{ users: { username: string; disabled: boolean }[] }>(
      "{ users { username disabled } }",
      {},
      await server.login(),
    );
    expect(users.data?.users.find((u) => u.username === "admin")?.disabled).toBe(false);
  });

  it("signs the new user in elsewhere, with no Users or Audit in the nav, and refuses those pages in words", async () => {
    const { page } = operator;
    await signIn(page, OPERATOR, INITIAL_PASSWORD, "OPERATOR");
    const nav = page.getByRole("navigation", { name: "Sections" });
    await nav.getByRole("link", { name: "Jobs" }).waitFor();
    await expect(nav.getByRole("link", { name: "Users" }).count()).resolves.toBe(0);
    await expect(nav.getByRole("link", { name: "Audit" }).count()).resolves.toBe(0);

    await page.goto("/users");
    await page.getByRole("alert").filter({ hasText: "User management is for administrators." }).waitFor(WAIT);
    await page.goto("/audit");
    await page.getByRole("alert").filter({ hasText: "The audit log is for administrators." }).waitFor(WAIT);
  });

  it("lets the user change their own password on the Account page, reached from their name", async () => {
    const { page } = operator;
    await page.getByRole("link", { name: `Signed in as ${OPERATOR} (OPERATOR)` }).click();
    await page.waitForURL("**/account");
    await page.getByRole("heading", { name: "Your account" }).waitFor(WAIT);
    // This browser's session is listed and marked.
    await page.locator('tr[data-current="true"]').getByText("This browser").waitFor(WAIT);

    await page.getByLabel("Current password").fill("not-my-password");
    await page.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel("New password again").fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Is not your current password").waitFor(WAIT);

    await page.getByLabel("Current password").fill(INITIAL_PASSWORD);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByRole("status").filter({ hasText: "Password changed." }).waitFor(WAIT);
    await screenshot(page, "dashboard-admin/02-account");

    // The new password signs in; the old one no longer does; this browser's session still works.
    await expect(server.login(OPERATOR, NEW_PASSWORD)).resolves.toBeTruthy();
    const old = await server.graphql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", {
      u: OPERATOR,
      p: INITIAL_PASSWORD,
    });
    expect(old.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    const me = await server.graphql<{ me: { username: string } }>("{ me { username } }", {}, (await storedToken(page))!);
    expect(me.data?.me.username).toBe(OPERATOR);
  });

  it("creates an API token at or below the user's role and shows its secret once", async () => {
    const { page } = operator;
    await page.getByRole("button", { name: "Create a token" }).click();
    const roles = await page.getByLabel("Role", { exact: true }).locator("option").allTextContents();
    expect(roles).toEqual(["OPERATOR", "VIEWER"]);
    await page.getByLabel("Name", { exact: true }).fill("nightly-report");
    await page.getByRole("button", { name: "Create token" }).click();
    const secret = await page.getByLabel("The new token's secret").inputValue(WAIT);
    const me = await server.graphql<{ me: { username: string; role: string } }>("{ me { username role } }", {}, secret);
    expect(me.data?.me).toEqual({ username: OPERATOR, role: "VIEWER" });
    await page.locator('tr[data-token="nightly-report"]').waitFor(WAIT);
    await page.getByRole("button", { name: "Done" }).click();
    await expect(page.getByLabel("The new token's secret").count()).resolves.toBe(0);
  });

  it("signs the user's page out when the admin disables the user", async () => {
    const { page } = operator;
    // The Logs page holds a live graphql-ws subscription: the server closes it (4401) when the credential dies.
    await page.getByRole("link", { name: "Logs" }).click();
    await page.getByRole("heading", { name: "Logs" }).waitFor(WAIT);
    expect(await storedToken(page)).toBeTruthy();

    const row = admin.page.locator(`tr[data-user="${OPERATOR}"]`);
    await row.getByRole("button", { name: "Disable" }).click();
    await row.getByRole("group").getByRole("button", { name: "Disable" }).click();
    await row.getByText("Disabled", { exact: true }).waitFor(WAIT);

    await expect.poll(() => path(page), WAIT).toBe("/signin");
    await expect(storedToken(page)).resolves.toBeNull();
    await page.getByRole("heading", { name: "Sign in to Cairn" }).waitFor(WAIT);
    await screenshot(page, "dashboard-admin/03-signed-out");
  });

  it("lists the createUser and updateUser entries on the audit page, filters them, and fits a phone", async () => {
    const { page } = admin;
    await page.getByRole("link", { name: "Audit" }).click();
    await page.waitForURL("**/audit");
    const created = page.locator('tr[data-action="createUser"]');
    await created.first().waitFor(WAIT);
    await expect(created.first().textContent()).resolves.toContain(OPERATOR);
    await expect(created.first().textContent()).resolves.toContain("admin");
    const updated = page.locator('tr[data-action="updateUser"][data-success="true"]');
    await updated.first().waitFor(WAIT);
    await expect(updated.first().textContent()).resolves.toContain(OPERATOR);
    // The refused attempt to disable the last ADMIN is there too, with its code.
    await expect(page.locator('tr[data-action="updateUser"][data-success="false"]').first().textContent()).resolves.toContain("CONFLICT");
    // The refused change names its user by id only: the page names it from the users it knows.
    await expect(
      page.locator('tr[data-action="updateUser"][data-success="false"] td[data-label="Object"]').first().textContent(),
    ).resolves.toBe("user admin");
    await expect(page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth")).resolves.toBe(0);
    await screenshot(page, "dashboard-admin/04-audit");

    await page.getByLabel("Operation").fill("createUser");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect
      .poll(() => page.locator("tr[data-action]").evaluateAll((rows) => [...new Set(rows.map((r) => r.getAttribute("data-action")))]), WAIT)
      .toEqual(["createUser"]);

    await page.setViewportSize({ width: 390, height: 800 });
    await page.getByRole("button", { name: "Clear" }).click();
    await page.locator('tr[data-action="updateUser"]').first().waitFor(WAIT);
    const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
    expect(overflow).toBe(0);
    await screenshot(page, "dashboard-admin/05-audit-phone");
    await page.goto("/users");
    await page.locator(`tr[data-user="${OPERATOR}"]`).waitFor(WAIT);
    await expect(page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth")).resolves.toBe(0);
    await screenshot(page, "dashboard-admin/06-users-phone");
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it("ran under the Content-Security-Policy without a single violation", () => {
    expect(admin.cspViolations).toEqual([]);
    expect(operator.cspViolations).toEqual([]);
  });
});
