/** Which ended runs each policy reports, what a report's subject says, and the SMTP settings' validation. */
import { describe, expect, it } from "vitest";
import { loadConfig, publicUrlOf } from "../../server/config.js";
import { reportEmail, reportSubject, webhookPayload } from "../../server/reports/report-content.js";
import { shouldReport } from "../../server/reports/report-policy.js";
import type { RunReport } from "../../server/reports/run-report.js";
import { BUSY_JOB_MESSAGE } from "../../server/runs/run-launcher.js";

const busy = { status: "SKIPPED" as const, skipReason: "JOB_BUSY" as const, error: `Skipped: ${BUSY_JOB_MESSAGE} (run 1234).` };
const empty = {
  status: "SKIPPED" as const,
  skipReason: "NOTHING_SELECTED" as const,
  error: "No VM matched the job's selection: nothing to do.",
};
// The policy decides on `skipReason` alone: a skip recorded with the busy sentence but no reason is not taken as busy.
const unexplained = { status: "SKIPPED" as const, skipReason: null, error: `Skipped: ${BUSY_JOB_MESSAGE} (run 1234).` };
const runs = {
  SUCCESS: { status: "SUCCESS" as const, error: null },
  FAILURE: { status: "FAILURE" as const, error: "1 of 2 VMs failed: a." },
  INTERRUPTED: { status: "INTERRUPTED" as const, error: "Cairn was stopped during the run" },
  CANCELLED: { status: "CANCELLED" as const, error: "Cancelled by a user." },
  "SKIPPED (busy job)": busy,
  "SKIPPED (no VM)": empty,
  "SKIPPED (no reason)": unexplained,
};

describe("report policy", () => {
  it.each([
    ["ALWAYS", ["SUCCESS", "FAILURE", "INTERRUPTED", "CANCELLED", "SKIPPED (busy job)", "SKIPPED (no VM)", "SKIPPED (no reason)"]],
    ["FAILURE", ["FAILURE", "INTERRUPTED", "SKIPPED (busy job)"]],
    ["NEVER", []],
  ] as const)("%s reports %j", (policy, reported) => {
    const actual = Object.entries(runs)
      .filter(([, run]) => shouldReport(policy, run))
      .map(([name]) => name);
    expect(actual).toEqual(reported);
  });

  it("never reports a run that has not ended", () => {
    expect(shouldReport("ALWAYS", { status: "RUNNING" })).toBe(false);
    expect(shouldReport("ALWAYS", { status: "PENDING" })).toBe(false);
  });
});

describe("report content", () => {
  const report = (run: Partial<RunReport["run"]>, vms: RunReport["vms"] = []): RunReport => ({
    run: {
      id: "r1",
      status: "SUCCESS",
      error: null,
      trigger: "SCHEDULE",
      startedAt: null,
      endedAt: null,
      durationSeconds: null,
      transferredBytes: 0,
      vmsTotal: 0,
      vmsSucceeded: 0,
      vmsFailed: 0,
      warnings: [],
      ...run,
    },
    job: { id: "j1", name: "nightly-delta", mode: "DELTA" },
    vms,
    restorePoints: [],
    url: "https://cairn.example.net/runs/r1",
  });

  it("says in the subject how many VMs failed, or why the run was skipped", () => {
    expect(reportSubject(report({ status: "FAILURE", vmsTotal: 5, vmsFailed: 2, vmsSucceeded: 3 }))).toBe(
      "[Cairn] nightly-delta: FAILURE (2 of 5 VMs failed)",
    );
    expect(reportSubject(report({ status: "SUCCESS", vmsTotal: 5, vmsSucceeded: 5 }))).toBe(
      "[Cairn] nightly-delta: SUCCESS (5 VMs backed up)",
    );
    expect(reportSubject(report({ status: "INTERRUPTED", vmsTotal: 5, vmsSucceeded: 3 }))).toBe(
      "[Cairn] nightly-delta: INTERRUPTED (3 of 5 VMs backed up)",
    );
    expect(reportSubject(report(busy))).toBe(`[Cairn] nightly-delta: SKIPPED (${BUSY_JOB_MESSAGE} (run 1234).)`);
  });

  it("escapes names in the HTML body and keeps line breaks out of the subject", () => {
    const content = reportEmail({
      ...report({ status: "FAILURE", vmsTotal: 1, vmsFailed: 1 }, [
        { uuid: "u1", name: "<b>web</b>", status: "FAILURE", error: "boom & bust", warnings: ["slow"], sizeBytes: 0, durationSeconds: 3 },
      ]),
      job: { id: "j1", name: "a\r\nBcc: evil@example.net", mode: "FULL" },
    });
    expect(content.subject).not.toMatch(/[\r\n]/);
    expect(content.html).toContain("&lt;b&gt;web&lt;/b&gt;");
    expect(content.html).toContain("boom &amp; bust");
    expect(content.text).toContain("warning: slow");
  });

  it("lists each restore point of a VERIFY job's run with its verdict, and counts the damaged ones in the subject", () => {
    const point = (
      name: string,
      verdict: string | null,
      status: "SUCCESS" | "FAILURE",
      extra: Partial<RunReport["restorePoints"][number]> = {},
    ): RunReport["restorePoints"][number] => ({
      restorePointId: `id-${name}`,
      vmUuid: "u1",
      name: `verify ${name}`,
      status,
      verdict,
      error: null,
      warnings: [],
      checkedBytes: 2 * 1024 * 1024,
      problems: 0,
      durationSeconds: 4,
      ...extra,
    });
    const damaged = point("web 2026-12-01T02:00:00Z on local", "DAMAGED", "FAILURE", {
      error: "1 damaged block in xo-vm-backups/u1/vdis/a.vhd (block 3); restore from another restore point; this one cannot be trusted.",
      problems: 1,
    });
    const verifyReport: RunReport = {
      ...report({ status: "FAILURE", vmsTotal: 1, vmsFailed: 1 }),
      job: { id: "j2", name: "weekly-verify", mode: "VERIFY" },
      restorePoints: [
        point("web 2026-11-30T02:00:00Z on local", "OK", "SUCCESS"),
        damaged,
        point("web 2026-12-02T02:00:00Z on local", "REPAIRED", "SUCCESS", { warnings: ["Repaired: its footer copy"] }),
      ],
    };
    expect(reportSubject(verifyReport)).toBe("[Cairn] weekly-verify: FAILURE (1 of 3 restore points damaged)");
    const content = reportEmail(verifyReport);
    expect(content.text).toContain("Restore points:");
    expect(content.text).toMatch(/OK\s+web 2026-11-30T02:00:00Z on local/);
    expect(content.text).toMatch(/DAMAGED\s+web 2026-12-01T02:00:00Z on local/);
    expect(content.text).toContain("damaged: 1 damaged block in xo-vm-backups/u1/vdis/a.vhd (block 3)");
    expect(content.text).toMatch(/REPAIRED\s+web 2026-12-02T02:00:00Z on local/);
    expect(content.text).toContain("warning: Repaired: its footer copy");
    expect(content.html).toContain("DAMAGED");
    expect(webhookPayload(verifyReport).run.restorePoints?.map((p) => [p.id, p.verdict])).toEqual([
      ["id-web 2026-11-30T02:00:00Z on local", "OK"],
      ["id-web 2026-12-01T02:00:00Z on local", "DAMAGED"],
      ["id-web 2026-12-02T02:00:00Z on local", "REPAIRED"],
    ]);
    // A backup job's webhook body is as it was: no restorePoints field.
    expect(webhookPayload(report({ status: "SUCCESS" })).run).not.toHaveProperty("restorePoints");
    const allGood = {
      ...verifyReport,
      run: { ...verifyReport.run, status: "SUCCESS" as const },
      restorePoints: [verifyReport.restorePoints[0]],
    };
    expect(reportSubject(allGood)).toBe("[Cairn] weekly-verify: SUCCESS (1 restore point verified)");
  });
});

describe("report settings", () => {
  it("reads SMTP_URL, SMTP_FROM and PUBLIC_URL, with their defaults", () => {
    const defaults = loadConfig({}, "/tmp");
    expect(defaults.smtpUrl).toBeUndefined();
    expect(defaults.smtpFrom).toMatch(/^cairn@.+/);
    expect(publicUrlOf(defaults, 4000)).toBe("http://127.0.0.1:4000");
    const config = loadConfig(
      { SMTP_URL: "smtps://u:p@mail.example.net:465", SMTP_FROM: "Cairn <c@example.net>", PUBLIC_URL: "https://cairn.example.net/" },
      "/tmp",
    );
    expect(config).toMatchObject({
      smtpUrl: "smtps://u:p@mail.example.net:465",
      smtpFrom: "Cairn <c@example.net>",
      publicUrl: "https://cairn.example.net",
    });
    expect(publicUrlOf(config, 4000)).toBe("https://cairn.example.net");
  });

  it("refuses a bad SMTP_URL without echoing it, and a bad SMTP_FROM or PUBLIC_URL", () => {
    const refused = (env: Record<string, string>) => {
      try {
        loadConfig(env, "/tmp");
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error("accepted");
    };
    const message = refused({ SMTP_URL: "http://user:TopSecret@mail.example.net" });
    expect(message).toContain("SMTP_URL=(hidden)");
    expect(message).not.toContain("TopSecret");
    expect(refused({ SMTP_URL: "smtp://user@mail.example.net" })).toContain("SMTP_URL=(hidden): give both user and password");
    expect(refused({ SMTP_FROM: "not an address" })).toContain("SMTP_FROM");
    expect(refused({ PUBLIC_URL: "cairn.example.net" })).toContain("PUBLIC_URL");
  });
});
