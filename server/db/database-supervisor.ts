/**
 * Watches the database while Cairn runs, brings it back when it goes away, and says why while it is away.
 *
 * - Embedded PostgreSQL: the postmaster is our child process, so its death is seen at once (its exit). It is started again
 *   on the same data folder and port; PostgreSQL replays its WAL on start, as after a power cut. Backends it left are still
 *   dying for a moment and hold its shared memory: the first restart may be refused, so restarts are retried with backoff.
 * - Any server (DATABASE_URL too): a probe on a connection of its own every `probeIntervalMs`. A failed probe is confirmed
 *   by a second one at once (one backend terminated by an administrator is not an outage), then the database is declared
 *   away and probed with backoff until it answers.
 *
 * The Prisma client needs nothing from here: its pool (node-postgres) drops a connection that failed and opens new ones on
 * demand, so queries work again as soon as the server does. What the rest of Cairn needs is to know: `onUnavailable` (the
 * run machinery stops its runs, which can no longer record anything) and `onAvailable` (it marks them INTERRUPTED and cleans
 * up after them); `check()` is /healthz.
 */
import pg from "pg";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { RunningPostgres } from "./embedded-postgres.js";

export interface DatabaseAvailability {
  /** Why the database cannot be used now, in words for people; undefined while it answers. */
  readonly unavailableReason: string | undefined;
  /** Called once each time the database is found gone, with the reason. Returns a remover. */
  onUnavailable(listener: (reason: string) => void): () => void;
  /** Called once each time the database answers again after an outage. Returns a remover. */
  onAvailable(listener: () => void): () => void;
  /**
   * Resolves when the database answers (`query` is the serving path: the Prisma client); while it is away, or when `query`
   * fails, throws a CairnError (DatabaseUnavailable) saying why, for /healthz.
   */
  check(query: () => Promise<unknown>): Promise<void>;
}

export interface DatabaseSupervisor extends DatabaseAvailability {
  /** The embedded server now running (another object after each restart); undefined with DATABASE_URL. */
  readonly postgres: RunningPostgres | undefined;
  /** Stops watching and restarting (the embedded server itself is left to the caller, through `postgres`). */
  stop(): Promise<void>;
}

export interface DatabaseSupervisorOptions {
  connectionString: string;
  log: Logger;
  /** The embedded server and how to start it again (same data folder, port and password). */
  embedded?: { running: RunningPostgres; restart(): Promise<RunningPostgres> };
  /** @default 5000 */
  probeIntervalMs?: number;
  /** A probe that has not connected and answered within this fails. @default 5000 */
  probeTimeoutMs?: number;
  /** The first and the longest wait between two attempts to reconnect or restart. @default { initialMs: 500, maxMs: 15000 } */
  backoff?: { initialMs: number; maxMs: number };
}

export function superviseDatabase(options: DatabaseSupervisorOptions): DatabaseSupervisor {
  const { log } = options;
  const probeIntervalMs = options.probeIntervalMs ?? 5000;
  const probeTimeoutMs = options.probeTimeoutMs ?? 5000;
  const backoff = options.backoff ?? { initialMs: 500, maxMs: 15_000 };
  const unavailableListeners = new Set<(reason: string) => void>();
  const availableListeners = new Set<() => void>();
  let postgres = options.embedded?.running;
  /** How the embedded postmaster ended, while it is not running. */
  let postmasterDeath: string | undefined;
  let reason: string | undefined;
  let downSince = 0;
  let stopped = false;
  let recovering: Promise<void> | undefined;
  let confirming: Promise<void> | undefined;
  let probeTimer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const probe = async (): Promise<void> => {
    const client = new pg.Client({
      connectionString: options.connectionString,
      connectionTimeoutMillis: probeTimeoutMs,
      query_timeout: probeTimeoutMs,
      application_name: "cairn-probe",
    });
    // A connection lost while probing is reported by the query; without a listener the emitter would throw it.
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT 1");
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  const markDown = (why: string) => {
    const wasUp = reason === undefined;
    reason = why;
    if (!wasUp) return;
    downSince = Date.now();
    log.warn({ reason: why }, "the database is unavailable");
    for (const listener of unavailableListeners) {
      try {
        listener(why);
      } catch (error) {
        log.error({ err: error }, "a database-unavailable listener failed");
      }
    }
  };

  const markUp = () => {
    if (reason === undefined) return;
    reason = undefined;
    log.info({ downMs: Date.now() - downSince }, "the database is available again");
    for (const listener of availableListeners) {
      try {
        listener();
      } catch (error) {
        log.error({ err: error }, "a database-available listener failed");
      }
    }
  };

  /** Waits `ms`, or less when stopping. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  const watchPostmaster = (running: RunningPostgres) => {
    void running.exited.then(({ code, signal, stopped: asked }) => {
      if (asked || stopped || running !== postgres) return;
      postmasterDeath = signal ? `killed by ${signal}` : `exit code ${code}`;
      log.error({ pid: running.pid, code, signal }, "the embedded PostgreSQL stopped on its own; restarting it");
      markDown(`The embedded PostgreSQL stopped (${postmasterDeath}); restarting it (attempt 1).`);
      void recover();
    });
  };

  /** Until the database answers again (or stop): restart the embedded server when it is not running, probe, back off. */
  const recover = (): Promise<void> => {
    recovering ??= (async () => {
      let wait = backoff.initialMs;
      for (let attempt = 1; !stopped; attempt++) {
        if (options.embedded && postmasterDeath !== undefined) {
          const how = postmasterDeath;
          log.warn({ attempt }, "starting the embedded PostgreSQL again");
          try {
            const running = await options.embedded.restart();
            if (stopped) {
              // Stopped while it was starting: the caller stops `postgres`, which must be this one.
              postgres = running;
              return;
            }
            postgres = running;
            postmasterDeath = undefined;
            watchPostmaster(running);
            log.info({ attempt, pid: running.pid }, "the embedded PostgreSQL is running again (it recovered its WAL)");
          } catch (error) {
            log.warn({ err: error, attempt, retryInMs: wait }, "could not start the embedded PostgreSQL again; retrying");
            markDown(
              `The embedded PostgreSQL stopped (${how}) and did not start again yet (attempt ${attempt}); retrying in ${seconds(wait)}.`,
            );
            await pause(wait);
            wait = Math.min(wait * 2, backoff.maxMs);
            continue;
          }
        }
        try {
          await probe();
          markUp();
          return;
        } catch (error) {
          const cause = causeOf(error);
          log.warn({ attempt, cause, retryInMs: wait }, "the database does not answer yet; retrying");
          markDown(
            options.embedded
              ? `The embedded PostgreSQL does not answer (${cause}); reconnecting (attempt ${attempt + 1}).`
              : `The database server does not answer (${cause}); reconnecting (attempt ${attempt + 1}).`,
          );
        }
        await pause(wait);
        wait = Math.min(wait * 2, backoff.maxMs);
      }
    })().finally(() => (recovering = undefined));
    return recovering;
  };

  /** A probe failed or a query said the server is gone: probe once more at once, and only then declare an outage. */
  const confirm = (): Promise<void> => {
    if (recovering || stopped) return Promise.resolve();
    confirming ??= (async () => {
      try {
        await probe();
      } catch (first) {
        try {
          await probe();
        } catch (error) {
          const cause = causeOf(error);
          log.warn({ cause, first: causeOf(first) }, "the database does not answer");
          markDown(
            options.embedded
              ? `The embedded PostgreSQL does not answer (${cause}); reconnecting (attempt 1).`
              : `The database server does not answer (${cause}); reconnecting (attempt 1).`,
          );
          void recover();
        }
      }
    })().finally(() => (confirming = undefined));
    return confirming;
  };

  const armProbe = () => {
    probeTimer = setTimeout(() => {
      const pass = reason === undefined ? confirm() : Promise.resolve();
      void pass.finally(() => {
        if (!stopped) armProbe();
      });
    }, probeIntervalMs);
    probeTimer.unref();
  };

  if (postgres) watchPostmaster(postgres);
  armProbe();

  return {
    get unavailableReason() {
      return reason;
    },
    get postgres() {
      return postgres;
    },
    onUnavailable(listener) {
      unavailableListeners.add(listener);
      return () => unavailableListeners.delete(listener);
    },
    onAvailable(listener) {
      availableListeners.add(listener);
      return () => availableListeners.delete(listener);
    },
    async check(query) {
      if (reason !== undefined) throw new CairnError(ErrorCode.DatabaseUnavailable, reason);
      try {
        await query();
      } catch (error) {
        // Not waited for: /healthz answers now, and the next call sees the outage if the probes confirm it.
        void confirm();
        throw new CairnError(
          ErrorCode.DatabaseUnavailable,
          reason ?? `The database did not answer (${causeOf(error)}); Cairn is checking the connection.`,
          {},
          { cause: error },
        );
      }
    },
    async stop() {
      stopped = true;
      clearTimeout(probeTimer);
      wake?.();
      await Promise.all([recovering, confirming]);
    },
  };
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/** Why a connection attempt failed, in a few words: never the driver's text (it may name hosts, users or SQL). */
function causeOf(error: unknown): string {
  for (let current: unknown = error, depth = 0; current && depth < 6; depth++) {
    const { code, message } = current as { code?: unknown; message?: unknown };
    switch (code) {
      case "ECONNREFUSED":
      case "ENOENT": // a Unix socket whose server stopped (and removed it)
        return "connection refused";
      case "ECONNRESET":
      case "EPIPE":
      case "57P01":
      case "57P02":
        return "the connection was closed by the server";
      case "57P03":
        return "it is starting up";
      case "ETIMEDOUT":
        return "no answer in time";
      case "ENOTFOUND":
      case "EAI_AGAIN":
        return "its host name does not resolve";
      case "EHOSTUNREACH":
      case "ENETUNREACH":
        return "its host is unreachable";
      case "28P01":
      case "28000":
        return "the credentials were refused";
      case "3D000":
        return "the database does not exist";
      case "53300":
        return "too many connections";
    }
    if (typeof message === "string") {
      if (/timeout/i.test(message)) return "no answer in time";
      if (/Connection terminated|connection is closed/i.test(message)) return "the connection was closed";
      if (/Can't reach database server/i.test(message)) return "connection refused";
    }
    current = (current as { cause?: unknown }).cause;
  }
  return "unexpected error";
}
