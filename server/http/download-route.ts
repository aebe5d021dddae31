/**
 * `GET /download/<token>`: the archive of a file-level restore (`restoreFiles`), streamed as it is read from the backup.
 * No bearer header: the token is the credential (32 random bytes, from an authenticated `restoreFiles` call, valid 5
 * minutes, consumed by the first request), so a browser can follow the link directly. Answers 404 for an unknown or
 * already used token, 410 for an expired one, 4xx/5xx JSON when the backup cannot be read before the first byte; after
 * the first byte an error cuts the connection (the client sees an incomplete archive, never a wrong one).
 */
import express from "express";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Services } from "../services/services.js";

const STATUS: Partial<Record<ErrorCode, number>> = { [ErrorCode.NotFound]: 404, [ErrorCode.BadInput]: 400, [ErrorCode.Unavailable]: 503 };

export function createDownloadRouter(services: Services, log: Logger): express.Router {
  const router = express.Router();
  router.get("/download/:token", async (req, res) => {
    res.setHeader("Cache-Control", "no-store");
    const fileRestore = services.fileRestore;
    const lookup = await fileRestore.tokens.consume(String(req.params.token));
    if (!lookup.ok) {
      return void (lookup.reason === "EXPIRED"
        ? res.status(410).json({ error: "This download link has expired (links last 5 minutes): ask for a new one with restoreFiles." })
        : res.status(404).json({
            error: "This download link is unknown or was already used (each link works once): ask for a new one with restoreFiles.",
          }));
    }
    try {
      await fileRestore.streamDownload(lookup.request, res, ({ fileName, contentType }) => {
        res.status(200);
        res.setHeader("Content-Type", contentType);
        res.setHeader("Content-Disposition", `attachment; filename="${fileName}"`);
        res.flushHeaders();
      });
    } catch (error) {
      if (res.headersSent) {
        log.warn({ err: error, restorePointId: lookup.request.restorePointId }, "file-level restore download failed mid-stream");
        res.destroy(error as Error);
        return;
      }
      if (error instanceof CairnError) return void res.status(STATUS[error.code] ?? 500).json({ error: error.message });
      log.error({ err: error }, "file-level restore download failed");
      res.status(500).json({ error: "Internal error; the details are in the server log." });
    }
  });
  return router;
}
