/**
 * A real headless Chromium for end-to-end tests: the Debian package (`/usr/bin/chromium`, installed by
 * `.ci/run`) driven by playwright-core, which never downloads a browser of its own.
 *
 * Each launch gets a fresh profile folder (no cache, cookies or localStorage from an earlier test), which
 * `close()` removes. Screenshots go to `test-results/` at the repository root (ignored by git), so a person
 * can look at what a test saw.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { expect } from "vitest";

/** Where the Debian package puts Chromium. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Where {@link screenshot} writes: `<repo>/test-results/`. */
export const TEST_RESULTS_DIR = fileURLToPath(new URL("../../test-results/", import.meta.url));

/**
 * Flags for a quiet, offline-friendly headless Chromium: `--no-sandbox` because tests run as root, the rest
 * stop it from calling home (updates, sync, QUIC probes) on machines that reach no network but the registries.
 */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
] as const;

export interface LaunchOptions {
  /** @default { width: 1280, height: 800 } */
  viewport?: { width: number; height: number };
  /** Emulates `prefers-color-scheme`. @default "light" */
  colorScheme?: "light" | "dark";
  /** Resolves relative `page.goto("/path")` against this URL. */
  baseURL?: string;
}

export interface LaunchedBrowser {
  context: BrowserContext;
  /** The context's first page, ready to `goto`. */
  page: Page;
  /** Closes the browser and removes its profile folder; safe to call twice. */
  close(): Promise<void>;
  /**
   * Every Content-Security-Policy violation any page of this browser reported so far (the console line Chromium writes):
   * a dashboard that works under its CSP leaves this empty.
   */
  cspViolations: string[];
}

/**
 * Starts headless Chromium with a fresh profile. Fails with the browser's own message when
 * `/usr/bin/chromium` is missing (install it with `apt-get install -y chromium`).
 */
export async function launchBrowser(options: LaunchOptions = {}): Promise<LaunchedBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), "cairn-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: options.viewport ?? { width: 1280, height: 800 },
      colorScheme: options.colorScheme ?? "light",
      baseURL: options.baseURL,
    });
  } catch (error) {
    await rm(userDataDir, { recursive: true, force: true });
    throw new Error(`Cannot start Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium)`, { cause: error });
  }
  const cspViolations: string[] = [];
  context.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  const page = context.pages()[0] ?? (await context.newPage());

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      try {
        await context.close();
      } finally {
        await rm(userDataDir, { recursive: true, force: true });
      }
    })());

  return { context, page, close, cspViolations };
}

/**
 * Saves a full-page PNG of `page` as `test-results/<name>.png` and returns its path. `name` may contain
 * slashes to group screenshots in folders; anything but letters, digits, `-`, `_` and `/` becomes `-`.
 */
export async function screenshot(page: Page, name: string): Promise<string> {
  const safe = name.replace(/[^\w/-]+/g, "-").replace(/^\/+/, "");
  const path = join(TEST_RESULTS_DIR, `${safe}.png`);
  await mkdir(join(path, ".."), { recursive: true });
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Screenshots of the page at 1280 and 390 px, each checked first for sideways scroll (none allowed); back at 1280 after.
 * A chart redraws at its new width once its ResizeObserver fires, after the resize: the layout is waited for to settle.
 */
export async function shootAtBothWidths(page: Page, folder: string, name: string): Promise<void> {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page
      .waitForFunction("document.documentElement.scrollWidth - document.documentElement.clientWidth === 0", undefined, { timeout: 10_000 })
      .catch(() => undefined); // the assertion below says what is wrong
    const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
    expect(overflow, `${name} scrolls sideways at ${width} px`).toBe(0);
    await screenshot(page, `${folder}/${name}-${width}`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** Signs in through the sign-in page and waits for the header to name the user. */
export async function signInThroughPage(page: Page, username: string, password: string): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText(`Signed in as ${username}`).waitFor({ timeout: 30_000 });
}

/** Builds the dashboard once when its build is missing: the server under test serves it from dashboard/build. */
export function ensureDashboardBuilt(): void {
  const repo = fileURLToPath(new URL("../..", import.meta.url));
  if (!existsSync(`${repo}/dashboard/build/200.html`)) {
    execFileSync("npm", ["run", "build:dashboard", "--silent"], { cwd: repo, stdio: "inherit" });
  }
}
