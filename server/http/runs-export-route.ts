/**
 * `GET /export/runs/<token>`: the run history (`exportRuns`) as CSV or JSON, streamed from Postgres page by page. Like
 * `/download/<token>`, no bearer header: the token is the credential (from an authenticated `exportRuns` call, valid 5
 * minutes, consumed by the first request). 404 for an unknown or used link, 410 for an expired one; after the first byte an
 * error cuts the connection, so a client never takes a truncated file for a whole one.
 */
import express from "express";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { RunStatus } from "../db/generated/enums.js";
import type { Services } from "../services/services.js";

const STATUS: Partial<Record<ErrorCode, number>> = { [ErrorCode.NotFound]: 404, [ErrorCode.BadInput]: 400, [ErrorCode.Unavailable]: 503 };

export function createRunsExportRouter(services: Services, log: Logger): express.Router {
  const router = express.Router();
  router.get("/export/runs/:token", async (req, res) => {
    res.setHeader("Cache-Control", "no-store");
    const lookup = await services.stats.runsExport.consume(String(req.params.token));
    if (!lookup.ok) {
      return void (lookup.reason === "EXPIRED"
        ? res.status(410).json({ error: "This export link has expired (links last 5 minutes): ask for a new one with exportRuns." })
        : res
            .status(404)
            .json({ error: "This export link is unknown or was already used (each link works once): ask for a new one with exportRuns." }));
    }
    const { filter, format } = lookup.request;
    try {
      const where = await services.runs.where({
        ...filter,
        status: filter.status as RunStatus[] | null,
        from: filter.from ? new Date(filter.from) : null,
        to: filter.to ? new Date(filter.to) : null,
      });
      const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "");
      res.status(200);
      res.setHeader("Content-Type", format === "CSV" ? "text/csv; charset=utf-8; header=present" : "application/json; charset=utf-8");
      res.setHeader("Content-Disposition", `attachment; filename="cairn-runs-${stamp}.${format === "CSV" ? "csv" : "json"}"`);
      res.setHeader("X-Content-Type-Options", "nosniff");
      await services.stats.runsExport.stream(where, format, res);
      res.end();
    } catch (error) {
      if (res.headersSent) {
        log.warn({ err: error }, "run history export failed mid-stream");
        res.destroy(error as Error);
        return;
      }
      if (error instanceof CairnError) return void res.status(STATUS[error.code] ?? 500).json({ error: error.message });
      log.error({ err: error }, "run history export failed");
      res.status(500).json({ error: "Internal error; the details are in the server log." });
    }
  });
  return router;
}
