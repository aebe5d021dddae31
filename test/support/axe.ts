/**
 * axe-core in a Playwright page: runs its accessibility rules (WCAG 2.0–2.2 A and AA, and axe's best practices) and
 * returns the violations a person would be stopped by, those of impact serious or critical, with a message that names
 * each rule, what it asks for, and the selectors of the offending elements, so a failing test says what to fix where.
 *
 * axe's source is evaluated in the page, not added as a <script>: the dashboard's Content-Security-Policy allows no
 * inline script but its own, and a refused script would both fail here and count as a CSP violation in the tests.
 */
import axe from "axe-core";
import type { Page } from "playwright-core";

/** The impacts that fail a page: a person using a keyboard or a screen reader cannot get past these. */
const BLOCKING = new Set(["serious", "critical"]);

export interface AxeViolation {
  id: string;
  impact: string;
  help: string;
  helpUrl: string;
  /** Each offending element: its CSS selector and axe's summary of what is wrong with it. */
  nodes: { target: string; summary: string }[];
}

/** The serious and critical axe violations on the page as it is now (wait for its content first). */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  const injected = await page.evaluate("typeof window.axe === 'object'");
  if (!injected) await page.evaluate(axe.source);
  const results = (await page.evaluate(`axe.run(document, {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    resultTypes: ["violations"],
  }).then((r) => r.violations.map((v) => ({
    id: v.id,
    impact: v.impact ?? "",
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: n.target.map(String).join(" >>> "), summary: n.failureSummary ?? "" })),
  })))`)) as AxeViolation[];
  return results.filter((violation) => BLOCKING.has(violation.impact));
}

/** The violations as lines a person reads in a failed test: rule, impact, what it asks for, and each element. */
export function describeAxeViolations(where: string, violations: AxeViolation[]): string {
  if (violations.length === 0) return `${where}: no serious or critical accessibility violations`;
  const lines = [`${where}: ${violations.length} serious or critical accessibility violation(s):`];
  for (const violation of violations) {
    lines.push(`- ${violation.id} (${violation.impact}): ${violation.help} (${violation.helpUrl})`);
    for (const node of violation.nodes) {
      lines.push(`    ${node.target}`);
      for (const line of node.summary.split("\n").filter(Boolean)) lines.push(`      ${line.trim()}`);
    }
  }
  return lines.join("\n");
}

/** Fails with {@link describeAxeViolations}'s message when the page has a serious or critical violation. */
export async function expectNoSeriousAxeViolations(page: Page, where: string): Promise<void> {
  const violations = await seriousAxeViolations(page);
  if (violations.length > 0) throw new Error(describeAxeViolations(where, violations));
}
