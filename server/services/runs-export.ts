/**
 * The run history as CSV or JSON, for `exportRuns`: a short-lived, single-use link (a DownloadToken of kind RUNS_EXPORT,
 * like a file restore's) to `GET /export/runs/<token>`, which streams the filtered runs newest first.
 *
 * Memory stays flat whatever the history's size: rows are read in keyset pages of {@link PAGE} ordered by (createdAt, id)
 * (the next page starts strictly after the last row written, so a run created meanwhile is never written twice), and a page
 * is read only once the previous one is in the socket's buffer (`write` answering false waits for 'drain').
 */
import type { Writable } from "node:stream";
import type { Db } from "../db/prisma.js";
import { DOWNLOAD_TOKEN_TTL_MS } from "../file-restore/download-tokens.js";
import { generateToken, hashToken } from "../security/tokens.js";
import type { RunFilter } from "./run-service.js";

const PAGE = 1000;
const KIND = "RUNS_EXPORT";

export type RunsExportFormat = "CSV" | "JSON";

export interface RunsExportRequest {
  kind: typeof KIND;
  format: RunsExportFormat;
  /** The filter with its dates as ISO strings (it is kept as JSON). */
  filter: {
    jobId?: string | null;
    status?: string[] | null;
    from?: string | null;
    to?: string | null;
    vmUuid?: string | null;
    search?: string | null;
  };
  userId: string | null;
  username: string | null;
}

/** The columns, in order (docs/API.md documents them): the CSV header, and the keys of each JSON object. */
export const EXPORT_COLUMNS = [
  "id",
  "kind",
  "status",
  "trigger",
  "jobId",
  "jobName",
  "scheduleId",
  "createdAt",
  "startedAt",
  "endedAt",
  "durationSeconds",
  "transferredBytes",
  "vmsTotal",
  "vmsSucceeded",
  "vmsFailed",
  "vmUuids",
  "skipReason",
  "error",
] as const;

type ExportRow = Record<(typeof EXPORT_COLUMNS)[number], string | number | string[] | null>;

export class RunsExport {
  constructor(private readonly db: Db) {}

  async issue(
    filter: RunFilter,
    format: RunsExportFormat,
    principal: { userId?: string | null; username?: string | null } | undefined,
  ): Promise<{ url: string; expiresAt: Date }> {
    await this.db.downloadToken.deleteMany({ where: { expiresAt: { lt: new Date(Date.now() - DOWNLOAD_TOKEN_TTL_MS) } } });
    const request: RunsExportRequest = {
      kind: KIND,
      format,
      filter: {
        jobId: filter.jobId ?? null,
        status: filter.status ?? null,
        from: filter.from?.toISOString() ?? null,
        to: filter.to?.toISOString() ?? null,
        vmUuid: filter.vmUuid ?? null,
        search: filter.search ?? null,
      },
      userId: principal?.userId ?? null,
      username: principal?.username ?? null,
    };
    const token = generateToken();
    const expiresAt = new Date(Date.now() + DOWNLOAD_TOKEN_TTL_MS);
    await this.db.downloadToken.create({ data: { tokenHash: hashToken(token), request: request as object, expiresAt } });
    return { url: `/export/runs/${token}`, expiresAt };
  }

  /** Takes an export link: it works once; unknown, used, expired or of another kind (a file restore's) is refused. */
  async consume(token: string): Promise<{ ok: true; request: RunsExportRequest } | { ok: false; reason: "UNKNOWN" | "EXPIRED" }> {
    if (token.length > 200) return { ok: false, reason: "UNKNOWN" };
    const tokenHash = hashToken(token);
    const taken = await this.db.downloadToken.updateMany({
      where: { tokenHash, usedAt: null, request: { path: ["kind"], equals: KIND } },
      data: { usedAt: new Date() },
    });
    if (taken.count === 0) return { ok: false, reason: "UNKNOWN" };
    const row = await this.db.downloadToken.findUniqueOrThrow({ where: { tokenHash } });
    if (row.expiresAt.getTime() <= Date.now()) return { ok: false, reason: "EXPIRED" };
    return { ok: true, request: row.request as unknown as RunsExportRequest };
  }

  /** Writes every run matching `where` (a RunService.where) to `out`, newest first; resolves when the last byte is written. */
  async stream(where: object, format: RunsExportFormat, out: Writable): Promise<number> {
    const write = (text: string) =>
      out.write(text)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const done = (error?: Error) => {
              out.off("drain", done);
              out.off("close", closed);
              if (error) reject(error);
              else resolve();
            };
            const closed = () => done(new Error("the client closed the connection"));
            out.once("drain", done);
            out.once("close", closed);
          });
    let count = 0;
    let after: { createdAt: Date; id: string } | null = null;
    await write(format === "CSV" ? `${EXPORT_COLUMNS.join(",")}\r\n` : "[");
    for (;;) {
      const page: Awaited<ReturnType<typeof this.page>> = await this.page(where, after);
      if (page.length === 0) break;
      let chunk = "";
      for (const run of page) {
        const row = rowOf(run);
        chunk += format === "CSV" ? csvLine(row) : `${count === 0 ? "\n" : ",\n"}${JSON.stringify(row)}`;
        count++;
      }
      await write(chunk);
      const last = page[page.length - 1];
      after = { createdAt: last.createdAt, id: last.id };
      if (page.length < PAGE) break;
    }
    await write(format === "CSV" ? "" : count === 0 ? "]\n" : "\n]\n");
    return count;
  }

  private page(where: object, after: { createdAt: Date; id: string } | null) {
    return this.db.run.findMany({
      where: after
        ? // `createdAt <= last` is implied by the OR but bounds the index scan: without it, every page re-read all newer runs.
          {
            AND: [
              where,
              { createdAt: { lte: after.createdAt } },
              { OR: [{ createdAt: { lt: after.createdAt } }, { id: { lt: after.id } }] },
            ],
          }
        : where,
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: PAGE,
      include: { job: { select: { name: true } } },
    });
  }
}

function rowOf(run: {
  id: string;
  kind: string;
  status: string;
  trigger: string;
  jobId: string | null;
  job: { name: string } | null;
  scheduleId: string | null;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  transferredBytes: bigint;
  vmsTotal: number;
  vmsSucceeded: number;
  vmsFailed: number;
  vmUuids: string[];
  skipReason: string | null;
  error: string | null;
}): ExportRow {
  return {
    id: run.id,
    kind: run.kind,
    status: run.status,
    trigger: run.trigger,
    jobId: run.jobId,
    jobName: run.job?.name ?? null,
    scheduleId: run.scheduleId,
    createdAt: run.createdAt.toISOString(),
    startedAt: run.startedAt?.toISOString() ?? null,
    endedAt: run.endedAt?.toISOString() ?? null,
    durationSeconds: run.startedAt && run.endedAt ? (run.endedAt.getTime() - run.startedAt.getTime()) / 1000 : null,
    transferredBytes: Number(run.transferredBytes),
    vmsTotal: run.vmsTotal,
    vmsSucceeded: run.vmsSucceeded,
    vmsFailed: run.vmsFailed,
    vmUuids: run.vmUuids,
    skipReason: run.skipReason,
    error: run.error,
  };
}

function csvLine(row: ExportRow): string {
  return `${EXPORT_COLUMNS.map((column) => csvCell(row[column])).join(",")}\r\n`;
}

/**
 * One RFC 4180 cell: quoted when it holds a quote, a comma, CR or LF (quotes doubled). A text starting with = + - @ (or a
 * tab or CR) is prefixed with ' so that a spreadsheet shows it rather than evaluating it as a formula; numbers are ours and
 * never negative, so they pass as they are. A list (vmUuids) is joined with spaces; null is an empty cell.
 */
export function csvCell(value: string | number | string[] | null): string {
  if (value === null) return "";
  if (typeof value === "number") return String(value);
  let text = Array.isArray(value) ? value.join(" ") : value;
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
