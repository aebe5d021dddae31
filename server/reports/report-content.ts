/**
 * The words of a report: the email (subject, plain text, HTML) and the webhook's JSON body. Pure functions of a RunReport.
 * A VERIFY job's report lists the restore points it verified, each with its verdict, instead of VMs backed up.
 */
import type { RunReport } from "./run-report.js";

export interface EmailContent {
  subject: string;
  text: string;
  html: string;
}

/** The webhook's body (`event: "run.ended"`): a stable contract for integrations; add fields, rename none. */
export interface WebhookPayload {
  event: "run.ended";
  run: {
    id: string;
    job: { id: string; name: string };
    status: string;
    error: string | null;
    startedAt: string | null;
    endedAt: string | null;
    transferredBytes: number;
    vms: { uuid: string | null; name: string; status: string; error: string | null; warnings: string[]; sizeBytes: number }[];
    /** VERIFY jobs only: each restore point verified; `verdict` OK, DAMAGED, REPAIRED, or null when the verify did not finish. */
    restorePoints?: {
      id: string | null;
      vmUuid: string | null;
      name: string;
      status: string;
      verdict: string | null;
      error: string | null;
      warnings: string[];
      checkedBytes: number;
    }[];
  };
  url: string;
}

export function webhookPayload(report: RunReport): WebhookPayload {
  const { run, job } = report;
  return {
    event: "run.ended",
    run: {
      id: run.id,
      job: { id: job.id, name: job.name },
      status: run.status,
      error: run.error,
      startedAt: run.startedAt?.toISOString() ?? null,
      endedAt: run.endedAt?.toISOString() ?? null,
      transferredBytes: run.transferredBytes,
      vms: report.vms.map((vm) => ({
        uuid: vm.uuid,
        name: vm.name,
        status: vm.status,
        error: vm.error,
        warnings: vm.warnings,
        sizeBytes: vm.sizeBytes,
      })),
      ...(isVerify(report) && {
        restorePoints: report.restorePoints.map((point) => ({
          id: point.restorePointId,
          vmUuid: point.vmUuid,
          name: point.name,
          status: point.status,
          verdict: point.verdict,
          error: point.error,
          warnings: point.warnings,
          checkedBytes: point.checkedBytes,
        })),
      }),
    },
    url: report.url,
  };
}

/** "[Cairn] nightly-delta: FAILURE (2 of 5 VMs failed)". */
export function reportSubject(report: RunReport): string {
  const { run, job } = report;
  return oneLine(`[Cairn] ${job.name}: ${run.status} (${summary(report)})`);
}

function summary(report: RunReport): string {
  const { run } = report;
  if (isVerify(report) && run.status !== "SKIPPED") return verifySummary(report);
  const total = Math.max(run.vmsTotal, report.vms.length);
  const plural = (n: number) => `${n} VM${n === 1 ? "" : "s"}`;
  if (run.status === "SKIPPED" || (run.status !== "SUCCESS" && total === 0))
    return shorten(run.error?.replace(/^Skipped:\s*/, "") ?? "no VM backed up", 80);
  if (run.vmsFailed > 0) return `${run.vmsFailed} of ${plural(total)} failed`;
  if (run.status === "SUCCESS") return `${plural(total)} backed up`;
  return `${run.vmsSucceeded} of ${plural(total)} backed up`;
}

/** "1 of 4 restore points damaged", "4 restore points verified". */
function verifySummary(report: RunReport): string {
  const points = report.restorePoints;
  const plural = (n: number) => `${n} restore point${n === 1 ? "" : "s"}`;
  const damaged = points.filter((p) => p.verdict === "DAMAGED").length;
  const unfinished = points.filter((p) => p.status !== "SUCCESS" && p.verdict !== "DAMAGED").length;
  const parts = [
    ...(damaged > 0 ? [`${damaged} of ${plural(points.length)} damaged`] : []),
    ...(unfinished > 0 ? [`${unfinished} of ${plural(points.length)} not verified`] : []),
  ];
  if (parts.length > 0) return parts.join(", ");
  if (report.run.status === "SUCCESS") return `${plural(points.length)} verified`;
  return `${points.filter((p) => p.status === "SUCCESS").length} of ${plural(points.length)} verified`;
}

function isVerify(report: RunReport): boolean {
  return report.job.mode === "VERIFY";
}

export function reportEmail(report: RunReport): EmailContent {
  if (isVerify(report)) return verifyEmail(report);
  const { run, job } = report;
  const facts: [string, string][] = [
    ["Job", `${job.name} (${job.mode})`],
    ["Status", run.status],
    ...(run.error ? ([["Error", run.error]] as [string, string][]) : []),
    ["Started", run.startedAt?.toISOString() ?? "-"],
    ["Ended", run.endedAt?.toISOString() ?? "-"],
    ["Duration", duration(run.durationSeconds)],
    ["Transferred", bytes(run.transferredBytes)],
    ["VMs", `${run.vmsSucceeded} succeeded, ${run.vmsFailed} failed, ${Math.max(run.vmsTotal, report.vms.length)} in all`],
  ];
  const text = [
    ...facts.map(([label, value]) => `${`${label}:`.padEnd(13)}${value}`),
    "",
    ...(run.warnings.length > 0 ? ["Run warnings:", ...run.warnings.map((w) => `  - ${w}`), ""] : []),
    report.vms.length > 0 ? "VMs:" : "No VM was backed up.",
    ...report.vms.flatMap((vm) => [
      `  ${vm.status.padEnd(11)} ${vm.name}  ${bytes(vm.sizeBytes)}  ${duration(vm.durationSeconds)}${vm.uuid ? `  (${vm.uuid})` : ""}`,
      ...(vm.error ? [`      error: ${vm.error}`] : []),
      ...vm.warnings.map((w) => `      warning: ${w}`),
    ]),
    "",
    `Details: ${report.url}`,
    "",
  ].join("\n");

  const cell = (value: string, style = "") => `<td style="padding:4px 8px;border-bottom:1px solid #ddd;${style}">${value}</td>`;
  const colour = (status: string) =>
    status === "SUCCESS" ? "#1a7f37" : status === "FAILURE" || status === "INTERRUPTED" ? "#cf222e" : "#9a6700";
  const html = `<!doctype html>
<html><body style="font-family:system-ui,sans-serif;font-size:14px;color:#1f2328">
<h2 style="margin:0 0 12px">${escape(job.name)}: <span style="color:${colour(run.status)}">${run.status}</span></h2>
<table style="border-collapse:collapse;margin-bottom:16px">
${facts.map(([label, value]) => `<tr><th style="text-align:left;padding:2px 12px 2px 0">${escape(label)}</th><td>${escape(value)}</td></tr>`).join("\n")}
</table>
${run.warnings.length > 0 ? `<p><strong>Run warnings</strong></p><ul>${run.warnings.map((w) => `<li>${escape(w)}</li>`).join("")}</ul>` : ""}
${
  report.vms.length > 0
    ? `<table style="border-collapse:collapse">
<tr>${["VM", "Status", "Size", "Duration", "Errors and warnings"].map((h) => `<th style="text-align:left;padding:4px 8px;border-bottom:2px solid #999">${h}</th>`).join("")}</tr>
${report.vms
  .map(
    (vm) =>
      `<tr>${cell(`${escape(vm.name)}${vm.uuid ? `<br><small style="color:#656d76">${escape(vm.uuid)}</small>` : ""}`)}${cell(vm.status, `color:${colour(vm.status)};font-weight:600`)}${cell(bytes(vm.sizeBytes))}${cell(duration(vm.durationSeconds))}${cell(
        [
          ...(vm.error ? [`<span style="color:#cf222e">${escape(vm.error)}</span>`] : []),
          ...vm.warnings.map((w) => `&#9888; ${escape(w)}`),
        ].join("<br>"),
      )}</tr>`,
  )
  .join("\n")}
</table>`
    : "<p>No VM was backed up.</p>"
}
<p><a href="${escape(report.url)}">Open the run in Cairn</a></p>
</body></html>
`;
  return { subject: reportSubject(report), text, html };
}

/** A VERIFY job's report: a line per restore point with its verdict, what is damaged, and the warnings. */
function verifyEmail(report: RunReport): EmailContent {
  const { run, job } = report;
  const points = report.restorePoints;
  const checked = points.reduce((sum, p) => sum + p.checkedBytes, 0);
  const facts: [string, string][] = [
    ["Job", `${job.name} (${job.mode})`],
    ["Status", run.status],
    ...(run.error ? ([["Error", run.error]] as [string, string][]) : []),
    ["Started", run.startedAt?.toISOString() ?? "-"],
    ["Ended", run.endedAt?.toISOString() ?? "-"],
    ["Duration", duration(run.durationSeconds)],
    ["Checked", bytes(checked)],
    [
      "Points",
      `${points.filter((p) => p.status === "SUCCESS").length} verified, ${points.filter((p) => p.verdict === "DAMAGED").length} damaged, ${points.length} in all`,
    ],
  ];
  const verdictOf = (p: RunReport["restorePoints"][number]) =>
    p.verdict ?? (p.status === "SUCCESS" ? "OK" : p.status === "FAILURE" ? "NOT VERIFIED" : p.status);
  const text = [
    ...facts.map(([label, value]) => `${`${label}:`.padEnd(13)}${value}`),
    "",
    ...(run.warnings.length > 0 ? ["Run warnings:", ...run.warnings.map((w) => `  - ${w}`), ""] : []),
    points.length > 0 ? "Restore points:" : "No restore point was verified.",
    ...points.flatMap((p) => [
      `  ${verdictOf(p).padEnd(12)} ${p.name.replace(/^verify /, "")}  ${bytes(p.checkedBytes)}  ${duration(p.durationSeconds)}`,
      ...(p.error ? [`      ${p.verdict === "DAMAGED" ? "damaged" : "error"}: ${p.error}`] : []),
      ...p.warnings.map((w) => `      warning: ${w}`),
    ]),
    "",
    `Details: ${report.url}`,
    "",
  ].join("\n");

  const cell = (value: string, style = "") => `<td style="padding:4px 8px;border-bottom:1px solid #ddd;${style}">${value}</td>`;
  const colour = (verdict: string) =>
    verdict === "OK" || verdict === "SUCCESS" ? "#1a7f37" : verdict === "REPAIRED" ? "#9a6700" : "#cf222e";
  const html = `<!doctype html>
<html><body style="font-family:system-ui,sans-serif;font-size:14px;color:#1f2328">
<h2 style="margin:0 0 12px">${escape(job.name)}: <span style="color:${colour(run.status)}">${run.status}</span></h2>
<table style="border-collapse:collapse;margin-bottom:16px">
${facts.map(([label, value]) => `<tr><th style="text-align:left;padding:2px 12px 2px 0">${escape(label)}</th><td>${escape(value)}</td></tr>`).join("\n")}
</table>
${run.warnings.length > 0 ? `<p><strong>Run warnings</strong></p><ul>${run.warnings.map((w) => `<li>${escape(w)}</li>`).join("")}</ul>` : ""}
${
  points.length > 0
    ? `<table style="border-collapse:collapse">
<tr>${["Restore point", "Verdict", "Checked", "Duration", "Problems and warnings"].map((h) => `<th style="text-align:left;padding:4px 8px;border-bottom:2px solid #999">${h}</th>`).join("")}</tr>
${points
  .map(
    (p) =>
      `<tr>${cell(escape(p.name.replace(/^verify /, "")))}${cell(escape(verdictOf(p)), `color:${colour(verdictOf(p))};font-weight:600`)}${cell(bytes(p.checkedBytes))}${cell(duration(p.durationSeconds))}${cell(
        [
          ...(p.error ? [`<span style="color:#cf222e">${escape(p.error)}</span>`] : []),
          ...p.warnings.map((w) => `&#9888; ${escape(w)}`),
        ].join("<br>"),
      )}</tr>`,
  )
  .join("\n")}
</table>`
    : "<p>No restore point was verified.</p>"
}
<p><a href="${escape(report.url)}">Open the run in Cairn</a></p>
</body></html>
`;
  return { subject: reportSubject(report), text, html };
}

/** "1.5 GiB": binary units, as the dashboard shows them. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** "1 h 02 min 05 s", "42 s"; "-" when unknown. */
export function duration(totalSeconds: number | null): string {
  if (totalSeconds === null) return "-";
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min ${String(s).padStart(2, "0")} s`;
  if (m > 0) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A header line: no line breaks (they would end the header), bounded length. */
function oneLine(text: string): string {
  return shorten(text.replace(/[\r\n\t]+/g, " "), 200);
}

function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
