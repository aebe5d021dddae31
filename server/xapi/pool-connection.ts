/**
 * One live connection to a pool's XAPI (the `xen-api` client), with its status and reconnection.
 *
 * The client keeps its own live cache of objects (`xapi.objects`) fed by `event.from`; we read VMs, SRs and hosts from it.
 * A failed connect is retried with exponential backoff (1 s doubling to 60 s) until `close()`. The status is CONNECTING until
 * the first full object fetch, CONNECTED while events flow, ERROR (with the error) when connecting fails or the pool stays
 * unreachable: a single failed event watch is retried quietly (see {@link PoolConnectionOptions.failuresBeforeError}).
 */
import { EventEmitter } from "node:events";
import { createClient } from "xen-api";
import type { Logger } from "../log.js";
import { CairnError, ErrorCode, messageOf } from "../errors.js";
import { type ApiVersion, apiVersionWarning, masterApiVersion } from "./api-requirements.js";
import { CertificateRefusedError, pinnedDispatcher, type TlsTrust } from "./tls-trust.js";

export type PoolStatus = "CONNECTING" | "CONNECTED" | "ERROR" | "DISCONNECTED";

export interface PoolCredentials {
  url: string;
  username: string;
  password: string;
  allowUnauthorized: boolean;
  /** The pinned certificate's SHA-256 fingerprint (server/xapi/tls-trust.ts); undefined or null: none pinned yet. */
  tlsFingerprint?: string | null;
  /** The pool's name in Cairn, for errors a person reads. */
  name?: string;
}

/**
 * xen-api's `event.from` long poll: it asks XAPI to wait up to 60.1 s (its EVENT_TIMEOUT + 0.1) and gives the call 66 s
 * (node_modules/xen-api/index.mjs `_watchEvents`). XAPI answers after at most that wait, possibly a little later.
 */
export const EVENT_FROM_CALL_TIMEOUT_MS = 66_000;

/**
 * The client's HTTP inactivity limit (undici's headersTimeout and bodyTimeout on every JSON-RPC call and export GET, the
 * socket timeout of its PUTs). It must exceed the long poll with a margin: at 60 s (what Cairn used to set) every idle
 * `event.from` (answered after 60.1 s) died with UND_ERR_HEADERS_TIMEOUT and the pool flapped to ERROR.
 */
export const DEFAULT_HTTP_INACTIVITY_MS = 2 * EVENT_FROM_CALL_TIMEOUT_MS;

export interface PoolConnectionOptions {
  /** @default DEFAULT_HTTP_INACTIVITY_MS */
  httpInactivityTimeoutMs?: number;
  /** Failed event watches or reachability probes in a row before the status becomes ERROR. @default 3 */
  failuresBeforeError?: number;
  /** ... or this long after the first of them. @default 30 s */
  errorAfterMs?: number;
  /** The client's pause before it watches events again after a failure. @default 5 s */
  eventPollDelayMs?: number;
  /**
   * No answered `event.from` for this long means the event loop is stuck where the client reports nothing (after a lost
   * session it re-injects silently, e.g. against a host that refuses its certificate): probe the pool. @default 80 s
   */
  eventStallMs?: number;
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
  /** The pool master's XAPI version, read on connect. */
  apiVersion: ApiVersion | undefined;
  /** The fingerprint of the certificate the pool presents while Cairn refuses it (for the admin to check and trust). */
  presentedFingerprint: string | undefined;
  /** What will not work on this pool (an old XAPI), for the admin; undefined when everything Cairn calls is there. */
  warning: string | undefined;
  private client: XapiClient | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private lastEventAt = 0;
  private probing = false;
  private attempt = 0;
  /** Failed event watches and probes since the last event watch that worked. */
  private failuresInRow = 0;
  private failingSince: number | undefined;
  private lastFailureAt: number | undefined;
  private readonly options: Required<PoolConnectionOptions>;

  constructor(
    readonly poolId: string,
    private readonly credentials: PoolCredentials,
    private readonly log: Logger,
    options: PoolConnectionOptions = {},
  ) {
    super();
    this.options = {
      httpInactivityTimeoutMs: options.httpInactivityTimeoutMs ?? DEFAULT_HTTP_INACTIVITY_MS,
      failuresBeforeError: options.failuresBeforeError ?? 3,
      errorAfterMs: options.errorAfterMs ?? 30_000,
      eventPollDelayMs: options.eventPollDelayMs ?? 5_000,
      eventStallMs: options.eventStallMs ?? EVENT_FROM_CALL_TIMEOUT_MS + 14_000,
    };
  }

  /** The pool as a person names it: its name in Cairn, else its URL's host. */
  get displayName(): string {
    return this.credentials.name ?? this.host;
  }

  /** The host part of the pool's URL (no credentials, no path): the master's, once a member's URL led to it. */
  get host(): string {
    try {
      return new URL(this.baseUrl).host;
    } catch {
      return this.credentials.url;
    }
  }

  /** The error for a transfer or call that lost the pool: typed (UNAVAILABLE), naming the pool and its host. */
  unreachable(cause: unknown, reason?: string): PoolUnreachableError {
    return new PoolUnreachableError(this.poolId, this.displayName, this.host, cause, reason);
  }

  /** Whether the event watch or a probe lost the pool at or after `since` (epoch ms): a transfer then lost it too. */
  lostSince(since: number): boolean {
    return this.lastFailureAt !== undefined && this.lastFailureAt >= since;
  }

  /** Connects once; resolves when the pool's objects are loaded, rejects with the connection error. */
  async connectOnce(): Promise<void> {
    const client = createClient({
      url: this.credentials.url,
      auth: { user: this.credentials.username, password: this.credentials.password },
      allowUnauthorized: this.credentials.allowUnauthorized,
      // Event fetching errors are retried after this delay by the client; a minute (its default) hides an outage too long.
      eventPollDelay: this.options.eventPollDelayMs,
      // The client waits this long before each event poll (default 200 ms); a backup waits for events several times per
      // VM (snapshot, other_config, destroy), so the default alone cost ~0.8 s per delta (bench:backup).
      debounce: 50,
      callTimeout: 5 * 60_000,
      httpInactivityTimeout: this.options.httpInactivityTimeoutMs,
    }) as unknown as XapiClient;
    if (new URL(this.credentials.url).protocol === "https:" && !this.credentials.allowUnauthorized) {
      // xen-api builds its dispatcher from allowUnauthorized alone; every call and export must pass the pin instead.
      // Its JSON-RPC transport captured that dispatcher: _setUrl builds the transport again (xen-api 4.x, index.mjs).
      const internals = client as unknown as { _undiciDispatcher: unknown; _url: unknown; _setUrl(url: unknown): void };
      internals._undiciDispatcher = pinnedDispatcher(() => this.tlsTrust, this.displayName, {
        inactivityTimeoutMs: this.options.httpInactivityTimeoutMs,
      });
      internals._setUrl(internals._url);
    }
    this.client = client;
    client.on("eventFetchingError", (error) => {
      if (this.client !== client) return;
      this.failed(error, "event watch");
      this.probe(client);
    });
    client.on("eventFetchingSuccess", () => {
      if (this.client !== client) return;
      this.lastEventAt = Date.now();
      if (this.failuresInRow > 0) this.log.info({ poolId: this.poolId, failures: this.failuresInRow }, "pool event watch works again");
      this.failuresInRow = 0;
      this.failingSince = undefined;
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
    this.failuresInRow = 0;
    this.failingSince = undefined;
    this.checkApiVersion(client);
    this.setStatus("CONNECTED");
    this.watchForStall(client);
  }

  /**
   * xen-api reports failed `event.from` calls, but not a loop that cannot start again: after SESSION_INVALID it calls
   * `event.inject` until that works, logging to the console only. A pool whose events stopped is probed like one whose
   * watch failed, so that its status tells the truth.
   */
  private watchForStall(client: XapiClient): void {
    clearInterval(this.stallTimer);
    this.lastEventAt = Date.now();
    const every = Math.max(1_000, Math.min(5_000, this.options.eventStallMs / 4));
    this.stallTimer = setInterval(() => {
      if (this.closed || this.client !== client) {
        clearInterval(this.stallTimer);
        return;
      }
      const quietMs = Date.now() - this.lastEventAt;
      if (quietMs < this.options.eventStallMs || this.probing) return;
      this.lastEventAt = Date.now(); // one stall counts once per period
      this.failed(new Error(`no event from the pool for ${Math.round(quietMs / 1000)} s`), "event watch");
      this.probe(client);
    }, every);
    this.stallTimer.unref();
  }

  /** Reads the master's API version and says what will not work on an old one (once per connect). */
  private checkApiVersion(client: XapiClient): void {
    this.apiVersion = masterApiVersion(Object.values(client.objects.all));
    this.warning = this.apiVersion === undefined ? undefined : apiVersionWarning(this.apiVersion);
    if (this.warning !== undefined) this.log.warn({ poolId: this.poolId, apiVersion: this.apiVersion }, this.warning);
  }

  /**
   * One failed event watch or probe. The status becomes ERROR only when the pool looks really unreachable: several failures
   * in a row, or failures for a while. A single one (a connection reset, a restarted proxy) is logged and retried quietly.
   */
  private failed(error: unknown, what: string): void {
    const now = Date.now();
    this.failuresInRow++;
    this.failingSince ??= now;
    this.lastFailureAt = now;
    const reason = describeXapiError(error);
    this.noteCertificate(error);
    if (
      this.status === "ERROR" ||
      this.failuresInRow >= this.options.failuresBeforeError ||
      now - this.failingSince >= this.options.errorAfterMs
    ) {
      if (this.status !== "ERROR")
        this.log.warn({ poolId: this.poolId, error: reason, failures: this.failuresInRow }, `pool ${what} failed`);
      this.setStatus("ERROR", reason);
    } else {
      this.log.info({ poolId: this.poolId, error: reason, failures: this.failuresInRow }, `pool ${what} failed; retrying`);
    }
  }

  /**
   * Connects in the background, retrying with backoff until it works or the connection is closed. The promise settles
   * (never rejects) with the first attempt, so a caller may wait for it.
   */
  start(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.connectOnce().catch((error) => {
      if (this.closed) return;
      this.noteCertificate(error);
      this.setStatus("ERROR", describeXapiError(error));
      const delay = Math.min(1000 * 2 ** this.attempt++, MAX_BACKOFF_MS);
      this.log.warn({ poolId: this.poolId, error: describeXapiError(error), retryInMs: delay }, "pool connection failed");
      this.retryTimer = setTimeout(() => this.start(), delay);
    });
  }

  /**
   * After an event fetching error the client's next `event.from` is a long poll that only answers when something changes
   * (up to a minute): a quiet pool that is back would look broken that long, and one that is gone would look fine until the
   * client's next try. A cheap call tells sooner; it retries with backoff while the pool is down, each failure counting
   * towards ERROR.
   */
  private probe(client: XapiClient, attempt = 0): void {
    if (this.probing) return;
    this.probing = true;
    const delay = Math.min(1000 * 2 ** attempt, 30_000);
    this.probeTimer = setTimeout(() => {
      if (this.closed || this.client !== client || this.failuresInRow === 0) {
        this.probing = false;
        return;
      }
      client.call("pool.get_all").then(
        () => {
          this.probing = false;
          if (this.client === client && this.status === "ERROR") this.setStatus("CONNECTED");
        },
        (error) => {
          this.probing = false;
          if (this.closed || this.client !== client || this.failuresInRow === 0) return;
          this.failed(error, "reachability probe");
          this.probe(client, attempt + 1);
        },
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
          this.noteCertificate(error);
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
    clearInterval(this.stallTimer);
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

  /**
   * The pool master's URL (for Cairn's own HTTP transfers), without credentials: where the client is connected now. Given
   * a member's URL, XAPI answers HOST_IS_SLAVE [master address] and the client moves to the master (xen-api
   * `_sessionOpenRetryOptions` changes its URL's host name, keeping the scheme and port): uploads must go there too.
   */
  get baseUrl(): string {
    const current = (this.client as unknown as { _url?: { protocol?: string; hostname?: string; port?: string } } | undefined)?._url;
    if (!current?.hostname) return this.credentials.url;
    return `${current.protocol ?? new URL(this.credentials.url).protocol}//${current.hostname}${current.port ? `:${current.port}` : ""}`;
  }

  get allowUnauthorized(): boolean {
    return this.credentials.allowUnauthorized;
  }

  /** Which certificate the pool may present (uploads check it as the client's calls do). */
  get tlsTrust(): TlsTrust {
    return {
      allowUnauthorized: this.credentials.allowUnauthorized,
      fingerprint: this.credentials.tlsFingerprint,
      hostFingerprints: this.hostCertificateFingerprints(),
    };
  }

  /**
   * The SHA-256 fingerprints of the hosts' server certificates the pool lists (XAPI's `Certificate` records of type
   * `host`, in the format Node prints). They were read over a pinned connection, so they vouch for the members.
   */
  private hostCertificateFingerprints(): string[] {
    return Object.values(this.client?.objects.all ?? {})
      .filter((record) => record.$type.toLowerCase() === "certificate" && record.type === "host")
      .map((record) => String(record.fingerprint_sha256 ?? ""))
      .filter((fingerprint) => fingerprint !== "");
  }

  /** Records of one class from the live cache (empty while not connected). */
  records(type: string): XapiRecord[] {
    return Object.values(this.client?.objects.all ?? {}).filter((record) => record.$type === type);
  }

  /** Keeps the refused certificate's fingerprint while that is why the pool fails (any other failure replaces it). */
  private noteCertificate(error: unknown): void {
    this.presentedFingerprint = error instanceof CertificateRefusedError ? error.presented : undefined;
  }

  private setStatus(status: PoolStatus, error?: string): void {
    if (status !== this.status) this.log.info({ poolId: this.poolId, status, error }, "pool status changed");
    this.status = status;
    this.lastError = status === "CONNECTED" ? undefined : error;
    if (status === "CONNECTED") this.presentedFingerprint = undefined;
    this.emit("status", status, this.lastError);
  }
}

/**
 * The pool stopped answering during a call or a transfer (refused, reset, closed, timed out): "pool <name> is unreachable
 * (<host>): <what the network said>". Typed so that callers decide on the class, not on the text.
 */
export class PoolUnreachableError extends CairnError {
  constructor(
    readonly poolId: string,
    readonly poolName: string,
    readonly host: string,
    cause: unknown,
    reason?: string,
  ) {
    super(ErrorCode.Unavailable, `pool ${poolName} is unreachable (${host}): ${reason ?? networkReason(cause)}`, { poolId }, { cause });
    this.name = "PoolUnreachableError";
  }
}

// Error codes of Node's sockets and of undici that mean the connection to the host failed, not that XAPI refused something.
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

/** Whether `error` (or its cause) is a lost connection to the host rather than an answer from XAPI. */
export function isNetworkError(error: unknown): boolean {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === "string" && NETWORK_CODES.has(e.code)) return true;
  }
  return false;
}

/** What the network said, in words: the socket's code with the library's text. */
function networkReason(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === "string" ? e.code : undefined;
  const text = typeof e?.message === "string" ? e.message : messageOf(error);
  const said: Record<string, string> = {
    ECONNREFUSED: "the connection was refused",
    ECONNRESET: "the connection was reset",
    UND_ERR_SOCKET: "the host closed the connection",
    UND_ERR_CLOSED: "the host closed the connection",
    ERR_STREAM_PREMATURE_CLOSE: "the host closed the connection",
    EPIPE: "the host closed the connection",
    UND_ERR_HEADERS_TIMEOUT: "no answer in time",
    UND_ERR_BODY_TIMEOUT: "the transfer stalled",
    UND_ERR_CONNECT_TIMEOUT: "no connection in time",
    ETIMEDOUT: "no answer in time",
  };
  return code && said[code] ? `${said[code]} (${code})` : code ? `${text} (${code})` : text;
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
  if (error instanceof CairnError) return error.message; // ours (a refused certificate): already in a person's words
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
  if (error instanceof PoolUnreachableError) return error.message;
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : messageOf(error);
}
