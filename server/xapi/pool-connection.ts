/**
 * One live connection to a pool's XAPI (the `xen-api` client), with its status and reconnection.
 *
 * The client keeps its own live cache of objects (`xapi.objects`) fed by `event.from`; we read VMs, SRs and hosts from it.
 * A failed connect is retried with exponential backoff (1 s doubling to 60 s) until `close()`. The status is CONNECTING until
 * the first full object fetch, CONNECTED while events flow, ERROR (with the error) when connecting or event fetching fails.
 */
import { EventEmitter } from "node:events";
import { createClient } from "xen-api";
import type { Logger } from "../log.js";
import { messageOf } from "../errors.js";

export type PoolStatus = "CONNECTING" | "CONNECTED" | "ERROR" | "DISCONNECTED";

export interface PoolCredentials {
  url: string;
  username: string;
  password: string;
  allowUnauthorized: boolean;
}

export interface XapiRecord {
  $type: string;
  $ref: string;
  uuid: string;
  [field: string]: unknown;
}

/** The part of the xen-api client Cairn relies on. */
export interface XapiClient {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  readonly status: string;
  readonly objectsFetched: Promise<void>;
  readonly objects: { all: Record<string, XapiRecord>; on(event: string, listener: (...args: unknown[]) => void): void };
  call(method: string, ...args: unknown[]): Promise<unknown>;
  callAsync(method: string, ...args: unknown[]): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): void;
}

const MAX_BACKOFF_MS = 60_000;
const CONNECT_TIMEOUT_MS = 20_000;

export class PoolConnection extends EventEmitter {
  status: PoolStatus = "CONNECTING";
  lastError: string | undefined;
  private client: XapiClient | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private attempt = 0;

  constructor(
    readonly poolId: string,
    private readonly credentials: PoolCredentials,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Connects once; resolves when the pool's objects are loaded, rejects with the connection error. */
  async connectOnce(): Promise<void> {
    const client = createClient({
      url: this.credentials.url,
      auth: { user: this.credentials.username, password: this.credentials.password },
      allowUnauthorized: this.credentials.allowUnauthorized,
      // Event fetching errors are retried after this delay by the client; a minute (its default) hides an outage too long.
      eventPollDelay: 5_000,
      // The client waits this long before each event poll (default 200 ms); a backup waits for events several times per
      // VM (snapshot, other_config, destroy), so the default alone cost ~0.8 s per delta (bench:backup).
      debounce: 50,
      callTimeout: 5 * 60_000,
      httpInactivityTimeout: 60_000,
    }) as unknown as XapiClient;
    this.client = client;
    client.on("eventFetchingError", (error) => {
      this.setStatus("ERROR", describeXapiError(error));
      this.probe(client);
    });
    client.on("eventFetchingSuccess", () => {
      if (this.status !== "CONNECTED") this.setStatus("CONNECTED");
    });
    for (const event of ["add", "update", "remove"]) client.objects.on(event, () => this.emit("objects"));
    // The client drops its session when XAPI answers SESSION_INVALID (a restarted host, a lost session) and then waits for
    // someone to connect again: its event loop would wait forever. We are that someone.
    client.on("disconnected", () => {
      if (this.closed || this.client !== client || this.status === "CONNECTING") return;
      this.log.warn({ poolId: this.poolId }, "the pool ended the session; reconnecting");
      this.setStatus("ERROR", "the pool ended the session; reconnecting");
      this.reconnect(client);
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          await client.connect();
          await client.objectsFetched;
        })(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer from ${this.credentials.url} within ${CONNECT_TIMEOUT_MS / 1000} s`)),
            CONNECT_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      this.client = undefined;
      // The connection's own error is the one to report; a client that cannot even disconnect is dropped all the same.
      await client.disconnect().catch(() => undefined);
      throw error;
    } finally {
      clearTimeout(timer);
    }
    this.attempt = 0;
    this.setStatus("CONNECTED");
  }

  /**
   * Connects in the background, retrying with backoff until it works or the connection is closed. The promise settles
   * (never rejects) with the first attempt, so a caller may wait for it.
   */
  start(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.connectOnce().catch((error) => {
      if (this.closed) return;
      this.setStatus("ERROR", describeXapiError(error));
      const delay = Math.min(1000 * 2 ** this.attempt++, MAX_BACKOFF_MS);
      this.log.warn({ poolId: this.poolId, error: describeXapiError(error), retryInMs: delay }, "pool connection failed");
      this.retryTimer = setTimeout(() => this.start(), delay);
    });
  }

  /**
   * After an event fetching error the client's next `event.from` is a long poll that only answers when something changes
   * (up to a minute): a quiet pool that is back would look broken that long. A cheap call tells sooner; it retries with
   * backoff while the pool is down.
   */
  private probe(client: XapiClient, attempt = 0): void {
    if (this.probing) return;
    this.probing = true;
    const delay = Math.min(1000 * 2 ** attempt, 30_000);
    this.probeTimer = setTimeout(() => {
      this.probing = false;
      if (this.closed || this.client !== client || this.status !== "ERROR") return;
      client.call("pool.get_all").then(
        () => {
          if (this.client === client && this.status === "ERROR") this.setStatus("CONNECTED");
        },
        () => this.probe(client, attempt + 1),
      );
    }, delay);
  }

  /** Logs the same client in again, with backoff, until it works or the connection is closed. */
  private reconnect(client: XapiClient, attempt = 0): void {
    const delay = Math.min(1000 * 2 ** attempt, MAX_BACKOFF_MS);
    this.retryTimer = setTimeout(() => {
      if (this.closed || this.client !== client) return;
      client.connect().then(
        () => this.setStatus("CONNECTED"),
        (error) => {
          this.setStatus("ERROR", describeXapiError(error));
          this.log.warn({ poolId: this.poolId, error: describeXapiError(error), attempt }, "pool reconnection failed");
          this.reconnect(client, attempt + 1);
        },
      );
    }, delay);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    const client = this.client;
    this.client = undefined;
    this.status = "DISCONNECTED";
    // Closing: a pool that no longer answers has nothing left to release on our side.
    await client?.disconnect().catch(() => undefined);
  }

  /** The connected client; throws a clear error when the pool is not connected now. */
  get xapi(): XapiClient {
    if (!this.client || this.status === "CONNECTING") throw new PoolNotConnectedError(this.poolId, this.lastError);
    return this.client;
  }

  /** The pool master's URL (for Cairn's own HTTP transfers), without credentials. */
  get baseUrl(): string {
    return this.credentials.url;
  }

  get allowUnauthorized(): boolean {
    return this.credentials.allowUnauthorized;
  }

  /** Records of one class from the live cache (empty while not connected). */
  records(type: string): XapiRecord[] {
    return Object.values(this.client?.objects.all ?? {}).filter((record) => record.$type === type);
  }

  private setStatus(status: PoolStatus, error?: string): void {
    if (status !== this.status) this.log.info({ poolId: this.poolId, status, error }, "pool status changed");
    this.status = status;
    this.lastError = status === "CONNECTED" ? undefined : error;
    this.emit("status", status, this.lastError);
  }
}

export class PoolNotConnectedError extends Error {
  constructor(
    readonly poolId: string,
    reason?: string,
  ) {
    super(`Pool ${poolId} is not connected${reason ? ` (${reason})` : ""}.`);
  }
}

/** A short, secret-free description of a xen-api error: XAPI's code and params, or the network error. */
export function describeXapiError(error: unknown): string {
  const e = error as { code?: string; params?: unknown[]; message?: string };
  if (e?.code && Array.isArray(e.params)) {
    const params = e.code === "SESSION_AUTHENTICATION_FAILED" ? [] : e.params; // XAPI echoes the user name back
    return `${e.code}${params.length ? ` ${JSON.stringify(params)}` : ""}`;
  }
  if (e?.code) return `${e.code}: ${e.message ?? ""}`.trim();
  return e?.message ?? String(error);
}

/** XAPI's error code when there is one (`VDI_IO_ERROR`), else the error's text: the short verdict of a failed XAPI task. */
export function xapiErrorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : messageOf(error);
}
