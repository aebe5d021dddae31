/**
 * GET /metrics for Prometheus. Off unless METRICS says otherwise: run figures, job and pool names are not for anyone on the
 * network. With METRICS=token the scraper sends a Cairn token (a VIEWER API token is enough) as `Authorization: Bearer`.
 */
import express from "express";
import type { MetricsAccess } from "../config.js";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Services } from "../services/services.js";

export function createMetricsRouter(services: Services, access: MetricsAccess, log: Logger): express.Router {
  const router = express.Router();
  if (access === "off") return router;
  router.get("/metrics", async (req, res) => {
    if (access === "token") {
      try {
        const principal = await services.auth.authenticate(req.headers.authorization);
        if (principal === undefined) return refuse(res, "Send a Cairn API token: Authorization: Bearer <token>.");
      } catch (error) {
        if (error instanceof CairnError && error.code === ErrorCode.Unauthenticated) return refuse(res, error.message);
        log.warn({ err: error }, "metrics: the token could not be checked");
        res.status(503).type("text/plain").send("Cairn cannot check tokens right now (its database is unavailable).\n");
        return;
      }
    }
    try {
      const text = await services.metrics.exposition();
      res.type("text/plain; version=0.0.4; charset=utf-8").send(text);
    } catch (error) {
      log.warn({ err: error }, "metrics could not be collected");
      res.status(503).type("text/plain").send("Metrics are unavailable right now (Cairn's database is unreachable).\n");
    }
  });
  return router;
}

/** 401 with the challenge a scraper understands, and why in words. */
function refuse(res: express.Response, why: string): void {
  res.status(401).set("WWW-Authenticate", 'Bearer realm="cairn"').type("text/plain").send(`${why}\n`);
}
