/**
 * Run and task change events, across every Cairn process on one database.
 *
 * Publishing is a Postgres NOTIFY carrying only ids; every process (the publisher included) LISTENs and hands the event to
 * its local subscribers. One path for all events means a subscription on any process sees every run, and the order of events
 * is the order Postgres delivered them. Subscribers load current state from the database, so a lost event costs at most a
 * stale frame, never a wrong one.
 *
 * The database may go away (server/db/database-supervisor.ts): the LISTEN connection is then opened again with backoff, and
 * publishing goes through a pool that replaces dead connections. Until LISTEN is back, the process's own events are handed
 * to its subscribers directly; those of other processes are lost.
 */
import { EventEmitter } from "node:events";
import pg from "pg";
import type { Logger } from "../log.js";

export const EVENTS_CHANNEL = "cairn_events";
/** Sent by Postgres triggers on ApiToken and User (migration credential_notify) when a credential may have died or narrowed. */
export const CREDENTIALS_CHANNEL = "cairn_credentials";
/**
 * Sent by Postgres triggers on Job, Schedule, JobRemote and Remote (migration configuration_notify) when a job or a remote
 * changed.
 */
export const CONFIGURATION_CHANNEL = "cairn_configuration";
/** How long `syncNotices` waits for the LISTEN connection before answering that it cannot know. */
const SYNC_TIMEOUT_MS = 2_000;

/**
 * What the bus tells about credentials: `changed` (a commit changed one, anywhere; payload ignored) or `reset` (the LISTEN
 * connection was lost or opened again: notifications may have been missed, so everything learnt from them is void).
 */
export type CredentialNotice = "changed" | "reset";
/** What the bus tells about jobs and remotes (CONFIGURATION_CHANNEL): the same two notices. */
export type ConfigurationNotice = CredentialNotice;

export type CairnEvent = ({ type: "run"; runId: string; jobId: string | null } | { type: "task"; runId: string; taskId: string }) & {
  /** When it was published (ms since the epoch, the publisher's clock): set by `publish`, shown to subscribers as `emittedAt`. */
  emittedAt?: number;
};

export interface EventBus {
  publish(event: CairnEvent): Promise<void>;
  /**
   * Yields the events `keep` accepts (all by default) until `signal` aborts. Events wait for a slow consumer merged by
   * subject: a newer event of a run or a task waiting behind an older one takes its place (see eventQueue).
   */
  subscribe(signal?: AbortSignal, keep?: (event: CairnEvent) => boolean): AsyncIterableIterator<CairnEvent>;
  close(): Promise<void>;
  /** Credential notices from every process (see CredentialNotice); returns the unsubscribe function. */
  onCredentialNotice(listener: (notice: CredentialNotice) => void): () => void;
  /** Job and remote notices from every process (see ConfigurationNotice); returns the unsubscribe function. */
  onConfigurationNotice(listener: (notice: ConfigurationNotice) => void): () => void;
  /**
   * Resolves true once every credential and configuration notification committed before `asOf` (a `performance.now()`
   * reading, by default the call's) has been handed to the listeners, false when that cannot be known (not listening, or
   * the connection was lost meanwhile: a `reset` was or will be sent). A round trip on the LISTEN connection: Postgres
   * delivers the notifications of transactions committed before a query on a listening connection ahead of that query's
   * answer. A round trip sent after `asOf` serves every caller with that `asOf`: one request that asks twice (its token,
   * then the jobs list) and the requests arriving while one is under way share it.
   */
  syncNotices(asOf?: number): Promise<boolean>;
}

export interface EventBusOptions {
  /** The first and the longest wait between two attempts to LISTEN again after the connection was lost. @default 500 / 5000 */
  backoff?: { initialMs: number; maxMs: number };
}

export async function createEventBus(connectionString: string, log: Logger, options: EventBusOptions = {}): Promise<EventBus> {
  // Short: events of other processes are lost until LISTEN is back, and an attempt costs one connection.
  const backoff = options.backoff ?? { initialMs: 500, maxMs: 5000 };
  const local = new EventEmitter();
  local.setMaxListeners(0);
  const credentialListeners = new Set<(notice: CredentialNotice) => void>();
  const configurationListeners = new Set<(notice: ConfigurationNotice) => void>();
  const tell = <N>(listeners: Set<(notice: N) => void>, notice: N, what: string) => {
    for (const listener of listeners) {
      try {
        listener(notice);
      } catch (error) {
        log.error({ err: error }, `a ${what} notice listener failed`);
      }
    }
  };
  /** Every notice listener: `reset` goes to all of them (what was learnt from any channel may be void). */
  const notice = (channel: "credentials" | "configuration" | "all", kind: CredentialNotice) => {
    if (channel !== "configuration") tell(credentialListeners, kind, "credential");
    if (channel !== "credentials") tell(configurationListeners, kind, "configuration");
  };
  let closed = false;
  let listener: pg.Client | undefined;
  let reconnecting: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  // Publishing through a pool: a connection the server dropped is discarded and the next NOTIFY opens a new one, so
  // publishing works again as soon as the database does (a publish during the outage fails to its caller).
  const publisher = new pg.Pool({ connectionString, max: 2, application_name: "cairn-events" });
  publisher.on("error", (error) => log.debug({ err: error }, "an idle event publisher connection was lost"));

  /** Opens the LISTEN connection; once it has been listening, its loss starts `reconnect()`. */
  const connectListener = async () => {
    const client = new pg.Client({ connectionString, application_name: "cairn-events-listener", connectionTimeoutMillis: 10_000 });
    let listening = false;
    let lost = false;
    const onLost = (error?: Error) => {
      if (!listening || lost) return; // a failed connect is reported by connect() to the loop that called it
      lost = true;
      if (listener === client) listener = undefined;
      synced = Number.NEGATIVE_INFINITY;
      notice("all", "reset");
      client.end().catch((endError: unknown) => log.debug({ err: endError }, "could not end the lost event listener connection"));
      if (closed) return;
      log.warn({ err: error }, "event listener connection lost; reconnecting (events of other processes are lost meanwhile)");
      void reconnect();
    };
    client.on("notification", (message) => {
      if (message.channel === CREDENTIALS_CHANNEL) return notice("credentials", "changed");
      if (message.channel === CONFIGURATION_CHANNEL) return notice("configuration", "changed");
      if (message.channel !== EVENTS_CHANNEL || !message.payload) return;
      try {
        local.emit("event", JSON.parse(message.payload) as CairnEvent);
      } catch (error) {
        log.warn({ err: error, payload: message.payload }, "ignored a malformed event notification");
      }
    });
    client.on("error", onLost);
    client.on("end", () => onLost());
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENTS_CHANNEL}`);
      await client.query(`LISTEN ${CREDENTIALS_CHANNEL}`);
      await client.query(`LISTEN ${CONFIGURATION_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (closed) {
      await client.end().catch(() => undefined);
      return;
    }
    listening = true;
    listener = client;
    synced = Number.NEGATIVE_INFINITY;
    // Whatever was learnt before this connection listened (a previous one's notices) may miss changes made in between.
    notice("all", "reset");
  };

  // The sync round trips: one under way, and the one that the calls made meanwhile wait for (each with the moment it was
  // sent), and when the newest answered one on the current connection was sent.
  let syncing: { sentAt: number; answer: Promise<boolean> } | undefined;
  let nextSync: Promise<boolean> | undefined;
  let synced = Number.NEGATIVE_INFINITY;
  const syncOnce = async (sentAt: number): Promise<boolean> => {
    const client = listener;
    if (!client) return false;
    // A connection that died without a word can take long to be found dead: meanwhile the callers read the database.
    let timer: NodeJS.Timeout | undefined;
    const answered = await Promise.race([
      client.query("SELECT 1").then(
        () => true,
        () => false,
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), SYNC_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    const current = answered && listener === client;
    if (current) synced = Math.max(synced, sentAt);
    return current;
  };
  const startSync = (): Promise<boolean> => {
    const sentAt = performance.now();
    const answer = syncOnce(sentAt).finally(() => {
      if (syncing?.answer === answer) syncing = undefined;
    });
    syncing = { sentAt, answer };
    return answer;
  };

  /** LISTENs again, with backoff, until it works or the bus is closed. */
  const reconnect = (): Promise<void> => {
    reconnecting ??= (async () => {
      let wait = backoff.initialMs;
      for (let attempt = 1; !closed; attempt++) {
        try {
          await connectListener();
          if (!closed) log.info({ attempt }, "event listener reconnected");
          return;
        } catch (error) {
          log.warn({ err: error, attempt, retryInMs: wait }, "event listener could not reconnect yet; retrying");
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, wait);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
          wait = Math.min(wait * 2, backoff.maxMs);
        }
      }
    })().finally(() => (reconnecting = undefined));
    return reconnecting;
  };

  try {
    await connectListener();
  } catch (error) {
    await publisher.end().catch(() => undefined);
    throw error;
  }

  return {
    async publish(event) {
      if (closed) return;
      const stamped = { ...event, emittedAt: event.emittedAt ?? Date.now() };
      await publisher.query("SELECT pg_notify($1, $2)", [EVENTS_CHANNEL, JSON.stringify(stamped)]);
      // Not listening (reconnecting after an outage): this process's subscribers would miss its own event, e.g. the
      // INTERRUPTED of a run the outage cut, published as soon as the database is back. A notification sent before LISTEN
      // is never delivered, so this cannot double an event.
      if (!listener) local.emit("event", stamped);
    },
    subscribe(signal, keep) {
      return eventQueue(local, signal, keep);
    },
    onCredentialNotice(listener) {
      credentialListeners.add(listener);
      return () => credentialListeners.delete(listener);
    },
    onConfigurationNotice(listener) {
      configurationListeners.add(listener);
      return () => configurationListeners.delete(listener);
    },
    syncNotices(asOf = performance.now()) {
      if (closed || !listener) return Promise.resolve(false);
      if (synced >= asOf) return Promise.resolve(true);
      if (syncing && syncing.sentAt >= asOf) return syncing.answer;
      if (!syncing) return startSync();
      // The round trip under way was sent before a commit this caller must see: wait for the next one.
      nextSync ??= syncing.answer.then(() => {
        nextSync = undefined;
        return startSync();
      });
      return nextSync;
    },
    async close() {
      if (closed) return;
      closed = true;
      wake?.();
      local.emit("close");
      await reconnecting;
      await Promise.all(
        [listener?.end(), publisher.end()].map((p) =>
          p?.catch((error: unknown) => log.debug({ err: error }, "could not end an event bus connection while closing")),
        ),
      );
      listener = undefined;
    },
  };
}

/**
 * An async iterator over the bus's local events whose `return()` ends it at once (an async generator would wait for the next
 * event before running its cleanup, leaking a listener per closed subscription).
 *
 * Events the consumer has not taken yet are merged by subject: a newer event of the same run (or task) replaces the one
 * waiting, in its place. An event carries only ids and every consumer reads the subject's state when it handles the event,
 * so the older one would have shown the same state as the newer: nothing is lost, a consumer that fell behind (a thousand
 * sockets to write to while a run reports progress) catches up instead of falling further behind, and what waits is bounded
 * by the number of runs and tasks that changed, not by the number of changes.
 */
function eventQueue(local: EventEmitter, signal?: AbortSignal, keep?: (event: CairnEvent) => boolean): AsyncIterableIterator<CairnEvent> {
  const buffered: CairnEvent[] = [];
  let waiting: ((result: IteratorResult<CairnEvent>) => void) | undefined;
  let done = false;
  const onEvent = (event: CairnEvent) => {
    if (keep && !keep(event)) return;
    if (waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve({ value: event, done: false });
      return;
    }
    const older = buffered.findIndex((waitingEvent) => sameSubject(waitingEvent, event));
    if (older === -1) buffered.push(event);
    else buffered[older] = event;
  };
  const finish = (): Promise<IteratorResult<CairnEvent>> => {
    if (!done) {
      done = true;
      local.off("event", onEvent);
      local.off("close", finish);
      signal?.removeEventListener("abort", finish);
      waiting?.({ value: undefined, done: true });
      waiting = undefined;
    }
    return Promise.resolve({ value: undefined, done: true });
  };
  local.on("event", onEvent);
  local.once("close", finish);
  signal?.addEventListener("abort", finish, { once: true });
  if (signal?.aborted) void finish();
  return {
    next() {
      if (buffered.length > 0) return Promise.resolve({ value: buffered.shift()!, done: false });
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => (waiting = resolve));
    },
    return: finish,
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

/** Whether two events are about the same run, or the same task. */
function sameSubject(a: CairnEvent, b: CairnEvent): boolean {
  if (a.type === "task") return b.type === "task" && a.taskId === b.taskId;
  return b.type === "run" && a.runId === b.runId;
}
