/**
 * Run and task change events, across every Cairn process on one database.
 *
 * Publishing is a Postgres NOTIFY carrying only ids; every process (the publisher included) LISTENs and hands the event to
 * its local subscribers. One path for all events means a subscription on any process sees every run, and the order of events
 * is the order Postgres delivered them. Subscribers load current state from the database, so a lost event costs at most a
 * stale frame, never a wrong one.
 */
import { EventEmitter } from "node:events";
import pg from "pg";
import type { Logger } from "../log.js";

export const EVENTS_CHANNEL = "cairn_events";

export type CairnEvent = { type: "run"; runId: string; jobId: string | null } | { type: "task"; runId: string; taskId: string };

export interface EventBus {
  publish(event: CairnEvent): Promise<void>;
  /** Yields events until `signal` aborts. */
  subscribe(signal?: AbortSignal): AsyncIterableIterator<CairnEvent>;
  close(): Promise<void>;
}

export async function createEventBus(connectionString: string, log: Logger): Promise<EventBus> {
  const local = new EventEmitter();
  local.setMaxListeners(0);
  let closed = false;
  let listener: pg.Client | undefined;
  let publisher: pg.Client | undefined;

  const connectListener = async () => {
    const client = new pg.Client({ connectionString });
    client.on("notification", (message) => {
      if (message.channel !== EVENTS_CHANNEL || !message.payload) return;
      try {
        local.emit("event", JSON.parse(message.payload) as CairnEvent);
      } catch (error) {
        log.warn({ err: error, payload: message.payload }, "ignored a malformed event notification");
      }
    });
    client.on("error", (error) => {
      log.warn({ err: error }, "event listener connection lost; reconnecting");
      listener = undefined;
      client.end().catch((endError: unknown) => log.debug({ err: endError }, "could not end the lost event listener connection"));
      if (!closed) setTimeout(() => void connectListener().catch((e) => log.error({ err: e }, "event listener reconnect failed")), 1000);
    });
    await client.connect();
    await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    listener = client;
  };
  await connectListener();
  publisher = new pg.Client({ connectionString });
  publisher.on("error", (error) => log.warn({ err: error }, "event publisher connection lost"));
  await publisher.connect();

  return {
    async publish(event) {
      if (closed) return;
      if (!publisher) throw new Error("event bus is closed");
      await publisher.query("SELECT pg_notify($1, $2)", [EVENTS_CHANNEL, JSON.stringify(event)]);
    },
    subscribe(signal) {
      return eventQueue(local, signal);
    },
    async close() {
      closed = true;
      local.emit("close");
      await Promise.all(
        [listener?.end(), publisher?.end()].map((p) =>
          p?.catch((error: unknown) => log.debug({ err: error }, "could not end an event bus connection while closing")),
        ),
      );
      listener = publisher = undefined;
    },
  };
}

/**
 * An async iterator over the bus's local events whose `return()` ends it at once (an async generator would wait for the next
 * event before running its cleanup, leaking a listener per closed subscription).
 */
function eventQueue(local: EventEmitter, signal?: AbortSignal): AsyncIterableIterator<CairnEvent> {
  const buffered: CairnEvent[] = [];
  let waiting: ((result: IteratorResult<CairnEvent>) => void) | undefined;
  let done = false;
  const onEvent = (event: CairnEvent) => {
    if (waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve({ value: event, done: false });
    } else buffered.push(event);
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
