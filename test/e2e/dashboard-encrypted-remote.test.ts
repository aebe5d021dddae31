/**
 * Encrypted remotes in the dashboard, end to end: a real Cairn server (no lab) serving the built dashboard, a headless
 * Chromium signed in as the admin, and a LOCAL remote in a temporary folder. The remote form's "Encryption" part creates
 * an encrypted remote (the key check file lands in the folder, the passphrase comes back in no API answer), the list
 * says "Encrypted" in words, and the refusals (short passphrase, wrong key, plain remote on an encrypted folder) show at
 * the field. Screenshots go to test-results/dashboard-encrypted-remote/.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeAxeViolations, seriousAxeViolations } from "../support/axe.js";
import { launchBrowser, shootAtBothWidths, type LaunchedBrowser, signInThroughPage, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const SHOTS = "dashboard-encrypted-remote";

const PASSPHRASE = "correct horse battery staple 42";
const WRONG_PASSPHRASE = "not the passphrase it was made with";
/** Generous: a browser, a server and scrypt share a busy 2-core machine. */
const WAIT = { timeout: 30_000 };

/** Opens the "Add a remote" form on the Remotes page and fills a LOCAL remote's name and folder. */
async function openAddForm(page: Page, name: string, folder: string) {
  await page.goto("/remotes");
  await page.getByRole("button", { name: "Add a remote" }).click();
  const form = page.getByRole("form", { name: "Add a remote" });
  await form.getByLabel("Name").fill(name);
  await form.getByLabel("Folder").fill(folder);
  return form;
}

describe.skipIf(skipReason)("encrypted remotes in the dashboard of a real Cairn server", () => {
  let server: TestCairn;
  let browser: LaunchedBrowser;
  let folder: string;
  /** Every GraphQL answer the dashboard received, as text. */
  const answers: Promise<string>[] = [];

  beforeAll(async () => {
    // The server serves dashboard/build when it exists (npm test builds it first); build it for a lone run of this file.
    ensureDashboardBuilt();
    folder = await mkdtemp(path.join(os.tmpdir(), "cairn-encrypted-remote-"));
    server = await startTestCairn();
    browser = await launchBrowser({ baseURL: server.url });
    browser.page.on("response", (response) => {
      if (new URL(response.url()).pathname === "/graphql") answers.push(response.text().catch(() => ""));
    });
    await signInThroughPage(browser.page, "admin", ADMIN_PASSWORD);
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => server?.stop(),
      () => (folder ? rm(folder, { recursive: true, force: true }) : undefined),
    ),
  );

  it("creates an encrypted LOCAL remote through the form, accessible with its encryption part open", async () => {
    const { page } = browser;
    const form = await openAddForm(page, "vault", folder);
    const key = form.getByLabel("Passphrase or key");
    await expect(key.count()).resolves.toBe(0);
    await form.getByLabel("Encrypt backups on this remote").check();
    await key.waitFor(WAIT);
    await expect(key.getAttribute("type")).resolves.toBe("password");
    await form.getByText("keep a copy somewhere safe").waitFor(WAIT);
    await key.fill(PASSPHRASE);

    const violations = await seriousAxeViolations(page);
    expect(violations, describeAxeViolations("the remote form with its encryption part open", violations)).toEqual([]);
    await shootAtBothWidths(page, SHOTS, "01-add-encrypted-remote");

    await form.getByRole("button", { name: "Add remote", exact: true }).click();
    const row = page.locator('tr[data-remote="vault"]');
    await row.getByText("Encrypted", { exact: true }).waitFor(WAIT);
    await shootAtBothWidths(page, SHOTS, "02-list-with-encrypted-remote");

    const token = await server.login();
    const listed = await server.graphql<{ remotes: { name: string; encrypted: boolean }[] }>(
      "{ remotes { id name kind location options username enabled encrypted status restorePointCount } }",
      {},
      token,
    );
    expect(listed.data?.remotes.find((remote) => remote.name === "vault")?.encrypted).toBe(true);
    expect(JSON.stringify(listed)).not.toContain(PASSPHRASE);
    expect(existsSync(path.join(folder, "cairn-key-check.json"))).toBe(true);
  });

  it("refuses a passphrase under 12 characters in the browser, at the field", async () => {
    const { page } = browser;
    const form = await openAddForm(page, "vault-copy", folder);
    await form.getByLabel("Encrypt backups on this remote").check();
    await form.getByLabel("Passphrase or key").fill("too-short");
    await form.getByRole("button", { name: "Add remote", exact: true }).click();
    const error = form.locator("#remote-encryptionKey-error");
    await error.filter({ hasText: "give at least 12" }).waitFor(WAIT);
    await expect(form.getByLabel("Passphrase or key").getAttribute("aria-invalid")).resolves.toBe("true");
    // Refused before any request: the server knows no such remote.
    const listed = await server.graphql<{ remotes: { name: string }[] }>("{ remotes { name } }", {}, await server.login());
    expect(listed.data?.remotes.map((remote) => remote.name)).toEqual(["vault"]);
  });

  it("shows the server's wrong-key refusal at the field, naming the remote", async () => {
    const { page } = browser;
    const form = await openAddForm(page, "vault-copy", folder);
    await form.getByLabel("Encrypt backups on this remote").check();
    await form.getByLabel("Passphrase or key").fill(WRONG_PASSPHRASE);
    await form.getByRole("button", { name: "Add remote", exact: true }).click();
    await form.locator("#remote-encryptionKey-error").filter({ hasText: "The key for remote vault-copy is wrong" }).waitFor(WAIT);
    await expect(form.getByLabel("Passphrase or key").getAttribute("aria-invalid")).resolves.toBe("true");
    await shootAtBothWidths(page, SHOTS, "03-wrong-key");
  });

  it("says a plain remote on the encrypted folder is encrypted and asks for the key", async () => {
    const { page } = browser;
    const form = await openAddForm(page, "vault-plain", folder);
    await form.getByRole("button", { name: "Add remote", exact: true }).click();
    const error = form.locator("#remote-encryptionKey-error");
    await error.filter({ hasText: "Remote vault-plain is encrypted" }).waitFor(WAIT);
    await expect(error.textContent()).resolves.toContain("give the key or passphrase");
    await shootAtBothWidths(page, SHOTS, "04-plain-on-encrypted-folder");
  });

  it("keeps the key on an edit with the field left empty, and says what unticking would do", async () => {
    const { page } = browser;
    await page.goto("/remotes");
    await page.locator('tr[data-remote="vault"]').getByRole("button", { name: "Edit" }).click();
    const form = page.getByRole("form", { name: "Edit vault" });
    await expect(form.getByLabel("Encrypt backups on this remote").isChecked()).resolves.toBe(true);
    await expect(form.getByLabel("Passphrase or key").inputValue()).resolves.toBe("");
    await form.getByText("Leave empty to keep the current key.").waitFor(WAIT);
    await form.getByRole("button", { name: "Save" }).click();
    await form.waitFor({ state: "detached", ...WAIT });
    const listed = await server.graphql<{ remotes: { name: string; encrypted: boolean }[] }>(
      "{ remotes { name encrypted } }",
      {},
      await server.login(),
    );
    expect(listed.data?.remotes.find((remote) => remote.name === "vault")?.encrypted).toBe(true);

    await page.locator('tr[data-remote="vault"]').getByRole("button", { name: "Edit" }).click();
    await form.getByLabel("Encrypt backups on this remote").uncheck();
    await form.getByTestId("remove-encryption").filter({ hasText: "refused while the remote holds backups" }).waitFor(WAIT);
    await shootAtBothWidths(page, SHOTS, "05-edit-remove-encryption");
    await form.getByRole("button", { name: "Cancel" }).click();
  });

  it("never sent the passphrase back in any API answer the dashboard received", async () => {
    const texts = await Promise.all(answers);
    expect(texts.length).toBeGreaterThan(0);
    for (const text of texts) {
      expect(text).not.toContain(PASSPHRASE);
      expect(text).not.toContain(WRONG_PASSPHRASE);
    }
  });
});
