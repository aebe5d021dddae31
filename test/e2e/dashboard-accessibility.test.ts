/**
 * The dashboard for a person on a keyboard or a screen reader (issue 16), in a real Chromium against a real Cairn server with
 * the lab, after a real delta backup so that every page has content: axe-core finds no serious or critical violation (colour
 * contrast included) on any page, nor in the forms, errors and confirmations a click opens, at 1280 and 390 px and in the dark
 * theme; on the Jobs list, the New job form and the Restore page Tab reaches every link, button and field in the order they
 * read, each with a visible focus ring; the Run now menu opens, is reached and closes by keyboard; and a status is said in
 * words, not by colour alone. Screenshots go to test-results/dashboard-accessibility/.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeAxeViolations, seriousAxeViolations } from "../support/axe.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { launchBrowser, screenshot, type LaunchedBrowser, ensureDashboardBuilt } from "../support/browser.js";
import { ADMIN_PASSWORD, createUser } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { skipReasonForTools } from "../support/system-tools.js";

const skipReason = skipReasonForTools(["chromium"]);
const WAIT = { timeout: 30_000 };
const SHOTS = "dashboard-accessibility";

/**
 * Waits until the page shows its content: its heading is there and nothing says "Loading…" (aria-busy) any more, so that
 * axe checks what a person reads, not a placeholder.
 */
async function settled(page: Page, heading: string | RegExp): Promise<void> {
  await page.getByRole("heading", { level: 1, name: heading }).first().waitFor(WAIT);
  // A locator, not waitForFunction: its polling evaluates a string, which the dashboard's CSP (no unsafe-eval) refuses.
  await page
    .locator('[aria-busy="true"]')
    .first()
    .waitFor({ state: "detached", ...WAIT });
}

/**
 * Axe at 1280 and at 390 px (the narrow layout stacks tables and wraps the nav: another page to check), and at 1280 px in the
 * dark theme (its own palette, its own contrasts), with every fold open, with screenshots.
 */
async function expectAccessibleAtBothWidths(page: Page, name: string): Promise<void> {
  // What is folded away (a run's internals, a form's advanced settings) is read too once unfolded: checked unfolded.
  await page.evaluate(`for (const fold of document.querySelectorAll("details:not([open])")) fold.open = true`);
  await page
    .locator('[aria-busy="true"]')
    .first()
    .waitFor({ state: "detached", ...WAIT });
  const failures: string[] = [];
  for (const [width, colorScheme] of [
    [1280, "light"],
    [390, "light"],
    [1280, "dark"],
  ] as const) {
    await page.setViewportSize({ width, height: 900 });
    await page.emulateMedia({ colorScheme });
    await screenshot(page, `${SHOTS}/${name}-${width}${colorScheme === "dark" ? "-dark" : ""}`);
    // Issue 16: no page scrolls sideways on a phone (long names, errors and tables wrap or stack).
    const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
    if (overflow !== 0) failures.push(`${name} at ${width} px scrolls sideways by ${overflow} px`);
    const violations = await seriousAxeViolations(page);
    if (violations.length > 0) failures.push(describeAxeViolations(`${name} at ${width} px, ${colorScheme} theme`, violations));
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.emulateMedia({ colorScheme: "light" });
  expect(failures.join("\n\n"), "serious or critical axe violations, or a page wider than the screen").toBe("");
}

/** Signs in as admin from the sign-in page. */
async function signIn(page: Page): Promise<void> {
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Signed in as admin (ADMIN)" }).waitFor(WAIT);
}

/** The Restore page with the web-ext4 VM and its restore point chosen: every step shown, down to the restore form. */
async function openRestoreForm(page: Page): Promise<void> {
  await page.goto("/restore");
  await settled(page, "Restore");
  await page.getByRole("radio", { name: /web-ext4/ }).check();
  await page.locator("tr[data-restore-point] input[type=radio]").first().check();
  await page.getByRole("heading", { name: "5. Target and new VM" }).waitFor(WAIT);
  await page
    .locator('[aria-busy="true"]')
    .first()
    .waitFor({ state: "detached", ...WAIT });
}

interface TabStop {
  /** Position among the page's focusable elements in document order. */
  index: number;
  what: string;
  /** The outline or box-shadow that shows it has the focus, or "" when nothing shows it. */
  indicator: string;
}

/**
 * Marks every element a person can Tab to (links, buttons, fields, summaries, tabindex >= 0; shown and enabled) with its
 * position in document order, and returns their descriptions. A radio group is one stop: Tab enters it at its checked radio
 * (or its first) and the arrow keys move within it.
 */
const MARK_FOCUSABLES = `(() => {
  const candidates = document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]');
  const seenRadioGroups = new Set();
  const focusables = [];
  for (const element of candidates) {
    element.removeAttribute("data-tab-index");
    if (element.disabled || element.getAttribute("tabindex") === "-1" || element.type === "hidden") continue;
    if (!element.checkVisibility({ visibilityProperty: true })) continue;
    if (element.closest("[inert]")) continue;
    if (element.type === "radio") {
      const radios = [...document.querySelectorAll('input[type="radio"]')].filter(
        (radio) => radio.name === element.name && radio.form === element.form && !radio.disabled,
      );
      const entry = radios.find((radio) => radio.checked) ?? radios[0];
      if (seenRadioGroups.has(element.name)) continue;
      seenRadioGroups.add(element.name);
      if (entry !== element) continue;
    }
    element.setAttribute("data-tab-index", String(focusables.length));
    const label = (element.getAttribute("aria-label") || element.textContent || element.getAttribute("name") || "").trim().replace(/\\s+/g, " ").slice(0, 40);
    focusables.push(element.tagName.toLowerCase() + (element.type ? "[type=" + element.type + "]" : "") + (label ? ' "' + label + '"' : ""));
  }
  return focusables;
})()`;

/** Where the focus is now, and what shows it. */
const FOCUSED = `(() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0 && style.outlineColor !== "rgba(0, 0, 0, 0)"
    ? "outline " + style.outlineWidth + " " + style.outlineStyle + " " + style.outlineColor : "";
  const shadow = style.boxShadow !== "none" ? "box-shadow " + style.boxShadow : "";
  return {
    index: Number(element.getAttribute("data-tab-index") ?? -1),
    what: element.outerHTML.slice(0, 120),
    indicator: outline || shadow,
  };
})()`;

/**
 * Tabs through the page from its top (the skip link first) until the focus leaves it, and checks that every focusable element
 * was reached, once, in document order, each with a visible focus indicator.
 */
async function expectKeyboardReachable(page: Page, name: string): Promise<void> {
  await page.setViewportSize({ width: 1280, height: 900 });
  const focusables = (await page.evaluate(MARK_FOCUSABLES)) as string[];
  expect(focusables.length, `${name} has things to Tab to`).toBeGreaterThan(3);
  // Tab starts after what was last clicked: start it from the top by focusing the first stop and stepping back out of the page.
  await page.evaluate(`document.querySelector('[data-tab-index="0"]').focus()`);
  await page.keyboard.press("Shift+Tab");
  const stops: TabStop[] = [];
  for (let press = 0; press < focusables.length + 5; press++) {
    await page.keyboard.press("Tab");
    const stop = (await page.evaluate(FOCUSED)) as TabStop | null;
    if (stop === null || (stops.length > 0 && stop.index === stops[0].index)) break; // out of the page, or around again
    stops.push(stop);
  }
  const unmarked = stops.filter((stop) => stop.index === -1).map((stop) => stop.what);
  expect(unmarked, `${name}: Tab stops on elements that are not links, buttons or fields`).toEqual([]);
  const reached = stops.map((stop) => stop.index);
  const order = (indexes: number[]) => indexes.map((index) => focusables[index] ?? `#${index}`);
  expect(order(reached), `${name}: Tab reaches every link, button and field once, in the order they read`).toEqual(
    order(focusables.map((_, index) => index)),
  );
  const invisible = stops.filter((stop) => stop.indicator === "").map((stop) => focusables[stop.index]);
  expect(invisible, `${name}: elements whose focus does not show`).toEqual([]);
}

/**
 * Every status mark says its status in words (shown, or for screen readers), not only by its colour; and every coloured dot or
 * swatch (hidden from screen readers) stands beside words that say what it means.
 */
async function expectStatusesInWords(page: Page, name: string, atLeast = 1): Promise<void> {
  const silentDots = (await page.evaluate(`[...document.querySelectorAll(".dot[aria-hidden], .swatch[aria-hidden]")]
    .filter((dot) => (dot.parentElement.textContent || "").trim() === "")
    .map((dot) => dot.parentElement.outerHTML.slice(0, 160))`)) as string[];
  expect(silentDots, `${name}: coloured marks with no words beside them`).toEqual([]);
  const marks = (await page.evaluate(`[...document.querySelectorAll("[data-status]")].map((mark) => ({
    status: mark.getAttribute("data-status"),
    words: (mark.getAttribute("aria-label") || mark.textContent || "").trim(),
  }))`)) as { status: string; words: string }[];
  expect(marks.length, `${name} shows statuses`).toBeGreaterThanOrEqual(atLeast);
  for (const mark of marks) {
    const words = mark.status.toLowerCase().replace(/_/g, " ");
    expect(mark.words.toLowerCase(), `${name}: the ${mark.status} mark says its status in words`).toContain(words);
  }
}

describe.skipIf(skipReason)("the dashboard for a keyboard and a screen reader", () => {
  let f: BackupFixture;
  let browser: LaunchedBrowser;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ensureDashboardBuilt();
    f = await startBackupFixture();
    const web = f.vm("web-ext4");
    ids.vm = web.uuid;
    const job = await f.createJob({
      name: "a11y-delta",
      mode: "DELTA",
      selection: { vmUuids: [web.uuid] },
      remoteIds: [f.remoteId],
      // Two schedules: "Run now" then asks which one's retention the run keeps, a menu to reach by keyboard too.
      schedules: [
        { cron: "0 2 * * *", exportRetention: 2 },
        { name: "weekly", cron: "0 3 * * 0", exportRetention: 4 },
      ],
    });
    ids.job = job.id;
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    ids.run = run.id;
    const [point] = await f.restorePoints(job.id);
    ids.point = point.id;
    const { pools } = await f.gql<{ pools: { id: string }[] }>("{ pools { id } }");
    ids.pool = pools[0].id;
    await createUser(f.server, "olga", "OPERATOR"); // a user besides admin, whose password an admin may reset
    browser = await launchBrowser({ baseURL: f.server.url });
    await browser.page.goto("/signin");
    await signIn(browser.page);
  }, 600_000);

  afterAll(() =>
    stopAll(
      () => browser?.close(),
      () => f?.stop(),
    ),
  );

  it("has no serious violation on the sign-in page", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Username").waitFor(WAIT);
    await expectAccessibleAtBothWidths(page, "01-signin");
    await signIn(page);
  });

  const pages: { name: string; path: () => string; heading: string | RegExp }[] = [
    { name: "02-overview", path: () => "/", heading: "Overview" },
    { name: "03-jobs", path: () => "/jobs", heading: "Jobs" },
    { name: "04-new-job", path: () => "/jobs/new", heading: "New job" },
    { name: "05-job", path: () => `/jobs/${ids.job}`, heading: "a11y-delta" },
    { name: "06-logs", path: () => "/logs", heading: "Logs" },
    { name: "07-run", path: () => `/runs/${ids.run}`, heading: /a11y-delta/ },
    { name: "08-restore", path: () => "/restore", heading: "Restore" },
    { name: "09-remotes", path: () => "/remotes", heading: "Remotes" },
    { name: "10-pools", path: () => "/pools", heading: "Pools" },
    { name: "11-pool", path: () => `/pools/${ids.pool}`, heading: /\S/ },
    { name: "12-vms", path: () => "/vms", heading: "VMs" },
    { name: "13-vm", path: () => `/vms/${ids.vm}`, heading: "web-ext4" },
    { name: "14-vm-restore-point", path: () => `/vms/${ids.vm}/restore/${ids.point}`, heading: "Restore web-ext4" },
    { name: "15-reports", path: () => "/reports", heading: "Reports" },
    { name: "16-users", path: () => "/users", heading: "Users" },
    { name: "17-account", path: () => "/account", heading: "Your account" },
    { name: "18-audit", path: () => "/audit", heading: /Audit/ },
    { name: "19-not-found", path: () => "/no-such-page", heading: "Page not found" },
  ];

  for (const { name, path, heading } of pages) {
    it(`has no serious violation on ${name.slice(3)}`, async () => {
      const { page } = browser;
      await page.goto(path());
      await settled(page, heading);
      await expectAccessibleAtBothWidths(page, name);
    });
  }

  it("has no serious violation in the states a click opens: forms, their errors, confirmations", async () => {
    const { page } = browser;
    await page.goto("/jobs/new");
    await settled(page, "New job");
    await page.getByRole("button", { name: "Create job" }).click();
    await page.locator('[aria-invalid="true"]').first().waitFor(WAIT);
    await expectAccessibleAtBothWidths(page, "20-new-job-errors");

    await page.goto(`/jobs/${ids.job}`);
    await settled(page, "a11y-delta");
    await page.getByRole("button", { name: "Delete job" }).click();
    await page.getByRole("button", { name: "Cancel" }).waitFor(WAIT);
    await expectAccessibleAtBothWidths(page, "21-job-confirm-delete");

    await page.goto("/users");
    await settled(page, "Users");
    await page.getByRole("button", { name: "Add a user" }).click();
    await page.getByRole("button", { name: "Cancel" }).waitFor(WAIT);
    await page.getByRole("button", { name: "Reset password" }).first().click();
    await expectAccessibleAtBothWidths(page, "22-users-forms");

    await page.goto("/pools");
    await settled(page, "Pools");
    await page.getByRole("button", { name: "Connect a pool" }).click();
    await page.getByRole("button", { name: "Connect", exact: true }).waitFor(WAIT);
    await expectAccessibleAtBothWidths(page, "23-pools-connect");

    await page.goto("/remotes");
    await settled(page, "Remotes");
    await page.getByRole("button", { name: "Test", exact: true }).first().click();
    await page.locator('[data-testid="last-test"] .ok').first().waitFor(WAIT);
    await page.getByRole("button", { name: "Add a remote" }).click();
    await page.getByRole("button", { name: "Add remote", exact: true }).waitFor(WAIT);
    await expectAccessibleAtBothWidths(page, "24-remotes-add-and-test");

    await page.goto("/account");
    await settled(page, "Your account");
    await page.getByRole("button", { name: "Create a token" }).click();
    await page.getByRole("button", { name: "Create token", exact: true }).waitFor(WAIT);
    await expectAccessibleAtBothWidths(page, "25-account-create-token");
  });

  it("has no serious violation on the Restore page all the way down: a VM, its restore point, the target, the files", async () => {
    const { page } = browser;
    await openRestoreForm(page);
    await expectAccessibleAtBothWidths(page, "26-restore-form");
    await page.getByRole("radio", { name: /Files and folders/ }).check();
    await page.getByRole("heading", { name: "5. Files" }).waitFor(WAIT);
    await page
      .locator('[aria-busy="true"]')
      .first()
      .waitFor({ state: "detached", ...WAIT });
    await expectAccessibleAtBothWidths(page, "27-restore-files");
  });

  it("lets Tab reach everything on the Jobs list, in order, with the focus shown", async () => {
    const { page } = browser;
    await page.goto("/jobs");
    await settled(page, "Jobs");
    await expectKeyboardReachable(page, "Jobs");
  });

  it("lets Tab reach everything on the New job form, in order, with the focus shown", async () => {
    const { page } = browser;
    await page.goto("/jobs/new");
    await settled(page, "New job");
    await expectKeyboardReachable(page, "New job");
  });

  it("lets Tab reach everything on the Restore page, in order, with the focus shown", async () => {
    const { page } = browser;
    await openRestoreForm(page);
    await expectKeyboardReachable(page, "Restore");
  });

  it("opens the Run now menu from the keyboard, Tabs into it, and closes it with Escape back on its button", async () => {
    const { page } = browser;
    await page.goto(`/jobs/${ids.job}`);
    await settled(page, "a11y-delta");
    const runNow = page.getByRole("button", { name: "Run now ▾" });
    await runNow.focus();
    await page.keyboard.press("Enter");
    const menu = page.getByRole("group", { name: "Run with the retention of schedule" });
    await menu.waitFor(WAIT);
    await expect(runNow.getAttribute("aria-expanded")).resolves.toBe("true");
    await expect(seriousAxeViolations(page).then((found) => describeAxeViolations("the Run now menu", found))).resolves.toBe(
      "the Run now menu: no serious or critical accessibility violations",
    );
    await page.keyboard.press("Tab");
    await expect(page.evaluate("document.activeElement.closest('[role=group]') !== null")).resolves.toBe(true);
    await expect(page.evaluate(FOCUSED).then((stop) => (stop as TabStop).indicator)).resolves.not.toBe("");
    await page.keyboard.press("Escape");
    await menu.waitFor({ state: "detached", ...WAIT });
    await expect(page.evaluate("document.activeElement.textContent.trim()")).resolves.toBe("Run now ▾");
  });

  it("says each status in words, not by colour alone", async () => {
    const { page } = browser;
    // The VMs pages say a VM's protection with a coloured dot beside its words, and may show no run status at all.
    for (const [path, heading, runStatuses] of [
      ["/", "Overview", 1],
      ["/jobs", "Jobs", 1],
      ["/logs", "Logs", 1],
      [`/runs/${ids.run}`, /a11y-delta/, 1],
      [`/jobs/${ids.job}`, "a11y-delta", 1],
      ["/vms", "VMs", 0],
      [`/vms/${ids.vm}`, "web-ext4", 0],
    ] as const) {
      await page.goto(path);
      await settled(page, heading);
      await expectStatusesInWords(page, path, runStatuses);
    }
    await page.goto("/vms");
    await settled(page, "VMs");
    await expect(page.locator(".dot[aria-hidden]").count(), "the VMs page shows protection marks").resolves.toBeGreaterThan(0);
  });

  it("reported no Content-Security-Policy violation", () => {
    expect(browser.cspViolations).toEqual([]);
  });
});
