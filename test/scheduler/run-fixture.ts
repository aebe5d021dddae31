/**
 * A database, an event bus and run machineries for the run machinery tests, disposed of by `close()`. Executors are written
 * in each test: they are the outside input of the machinery.
 */
import { createPrismaClient, type Db, type Prisma } from "../../server/db/prisma.js";
import type { RunStatus } from "../../server/db/generated/enums.js";
import { createEventBus, type CairnEvent, type EventBus } from "../../server/events/event-bus.js";
import { createLogger } from "../../server/log.js";
import { startRunMachinery, type RunMachinery, type RunMachineryOptions } from "../../server/runs/run-machinery.js";
import { startScheduleTicker, type ScheduleTicker } from "../../server/scheduler/schedule-ticker.js";
import type { Clock } from "../../server/domain/clock.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

type MachineryOptions = Pick<RunMachineryOptions, "executors"> &
  Partial<Omit<RunMachineryOptions, "timing">> & {
    scheduler?: boolean;
    timing?: RunMachineryOptions["timing"] & { tickMs?: number };
    /** The schedule ticker's clock, and its "now" in place of the database's: the test moves time. */
    clock?: Clock;
  };

/** A run machinery and, unless `scheduler: false`, its schedule ticker. */
export type FixtureMachinery = RunMachinery & { ticker?: ScheduleTicker };

export const FAST_TIMING = { heartbeatMs: 300, sweepIntervalMs: 500, pollingIntervalSeconds: 0.5, tickMs: 1000, stopGraceMs: 3000 };

export interface RunFixture {
  database: TestDatabase;
  db: Db;
  events: EventBus;
  log: ReturnType<typeof createLogger>;
  /** Starts a machinery (a "process"); stopped by close() unless stopped before. */
  /** A started run machinery, with a schedule ticker unless `scheduler: false`; stopped by `close()`. */
  machinery(options: MachineryOptions): Promise<FixtureMachinery>;
  job(settings?: Prisma.InputJsonObject): Promise<{ id: string }>;
  /** Resolves with the run once `until` holds, re-reading it at each event of the run; fails with what was seen after `ms`. */
  waitForRun(
    runId: string,
    until: (run: { status: RunStatus }) => boolean,
    ms?: number,
  ): Promise<Awaited<ReturnType<Db["run"]["findUniqueOrThrow"]>>>;
  /** Stops every machinery started so far (for an afterEach: a failed test leaves none running into the next one). */
  stopMachineries(): Promise<void>;
  /** Records every event of the bus from now on. */
  record(): { events: CairnEvent[]; stop(): void };
  close(): Promise<void>;
}

let jobCounter = 0;

export async function createRunFixture(): Promise<RunFixture> {
  const database = await createTestDatabase();
  const db = createPrismaClient(database.url);
  const log = createLogger("silent");
  const events = await createEventBus(database.url, log);
  const machineries: RunMachinery[] = [];

  const stopMachineries = async () => {
    // Newest first; stopping one twice (by the test, then here) is harmless.
    for (const machinery of machineries.splice(0).reverse()) await machinery.stop();
  };

  const waitForRun: RunFixture["waitForRun"] = async (runId, until, ms = 10_000) => {
    const abort = new AbortController();
    const subscription = events.subscribe(abort.signal);
    const timer = setTimeout(() => abort.abort(), ms);
    try {
      let run = await db.run.findUniqueOrThrow({ where: { id: runId } });
      if (until(run)) return run;
      for await (const event of subscription) {
        if (event.runId !== runId) continue;
        run = await db.run.findUniqueOrThrow({ where: { id: runId } });
        if (until(run)) return run;
      }
      run = await db.run.findUniqueOrThrow({ where: { id: runId } });
      if (until(run)) return run;
      throw new Error(`run ${runId} did not reach the expected state within ${ms} ms; it is ${run.status} (error: ${run.error ?? "none"})`);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  };

  return {
    database,
    db,
    events,
    log,
    async machinery({ scheduler = true, clock, ...options }) {
      const timing = { ...FAST_TIMING, ...options.timing };
      const machinery = await startRunMachinery({ db, events, log, connectionString: database.url, ...options, timing });
      if (!scheduler) {
        machineries.push(machinery);
        return machinery;
      }
      // As the composition root does: the schedule ticker fires runs through the machinery's launcher.
      const clockOptions = clock ? { clock, now: async () => clock.now() } : {};
      const ticker = await startScheduleTicker({ db, log, launcher: machinery.launcher, tickMs: timing.tickMs, ...clockOptions }).catch(
        async (error: unknown) => {
          await machinery.stop();
          throw error;
        },
      );
      const withTicker = { ...machinery, ticker, stop: async () => (await ticker.stop(), await machinery.stop()) };
      machineries.push(withTicker);
      return withTicker;
    },
    job(settings = {}) {
      return db.job.create({
        data: {
          name: `job ${++jobCounter} ${Math.random().toString(36).slice(2, 8)}`,
          mode: "FULL",
          selection: { vmUuids: [] },
          srUuids: [],
          settings,
        },
        select: { id: true },
      });
    },
    waitForRun,
    record() {
      const abort = new AbortController();
      const seen: CairnEvent[] = [];
      void (async () => {
        for await (const event of events.subscribe(abort.signal)) seen.push(event);
      })();
      return { events: seen, stop: () => abort.abort() };
    },
    stopMachineries,
    async close() {
      await stopMachineries();
      await events.close();
      await db.$disconnect();
      await database.drop();
    },
  };
}

/** A promise with its resolve, for executors that wait for the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves when `signal` aborts, with its reason. */
export function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(signal.reason), { once: true }));
}
