/**
 * Live updates over graphql-ws, on the same path as HTTP GraphQL (`ws(s)://<host>/graphql`), authenticated
 * with `connectionParams: { authorization: "Bearer <token>" }` (API.md). Pages that show live progress
 * create one client for the app and call {@link subscribe}.
 *
 * A lost connection is not the end of a page's subscriptions: the client connects again, as long as it takes, and
 * subscribes them again by itself. While the Cairn server cannot be reached (see $lib/connection) it waits for it to
 * answer, rather than knocking on a closed door.
 */
import { createClient, type Client } from "graphql-ws";
import { print } from "@0no-co/graphql.web";
import type { TadaDocumentNode } from "gql.tada";
import { connection as appConnection, retryDelayMs, type ConnectionMonitor } from "../connection.js";
import { ApiError, ErrorCode, type GraphQLErrorEntry } from "./errors.js";

/** The graphql-ws URL for an HTTP GraphQL path on the page's origin: http becomes ws, https becomes wss. */
export function subscriptionUrl(base: { protocol: string; host: string }, path = "/graphql"): string {
  const protocol = base.protocol === "https:" ? "wss:" : "ws:";
  return `${protocol}//${base.host}${path}`;
}

export interface SubscriptionClientOptions {
  /** @default subscriptionUrl(location) */
  url?: string;
  /** Read at each (re)connection, so a new sign-in is picked up without a new client. */
  token: () => string | null;
  /** @default globalThis.WebSocket */
  webSocketImpl?: unknown;
  /**
   * Called when the server refuses the connection's token (close code 4401 or 4403, what graphql-ws sends
   * when `onConnect` refuses): the app signs out, as for an UNAUTHENTICATED HTTP answer.
   */
  onUnauthenticated?: () => void;
  /**
   * Whether the server can be reached: reconnections wait for it, and a socket that closes makes it check.
   * @default the app's monitor ($lib/connection)
   */
  connection?: ConnectionMonitor;
}

/** Close codes of a refused `connection_init` (graphql-ws `CloseCode.Unauthorized` and `CloseCode.Forbidden`). */
const REFUSED = new Set([4401, 4403]);
/** Closes that say nothing about the server: the client's own (1000 after the last subscription, 4499 `terminate()`). */
const OWN_CLOSES = new Set([1000, 4499]);

function closeCode(event: unknown): number | undefined {
  return typeof event === "object" && event !== null ? ((event as { code?: unknown }).code as number | undefined) : undefined;
}

function isRefusal(event: unknown): boolean {
  return REFUSED.has(closeCode(event) as number);
}

/**
 * A lazy graphql-ws client: it connects at the first subscription and closes after the last one ends. It reconnects
 * for as long as it takes (1 s doubling up to 15 s between attempts, and at once when the server answers again).
 */
export function createSubscriptionClient(options: SubscriptionClientOptions): Client {
  const connection = options.connection ?? appConnection;
  const client = createClient({
    url: options.url ?? subscriptionUrl(globalThis.location),
    lazy: true,
    webSocketImpl: options.webSocketImpl,
    connectionParams: () => {
      const token = options.token();
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    // graphql-ws retries a refusal by default ("access might be granted later"); the same token never is.
    shouldRetry: (event) => !isRefusal(event),
    // graphql-ws gives up after 5 attempts by default, ending every subscription: a server down for a minute must not.
    retryAttempts: Number.POSITIVE_INFINITY,
    retryWait: async (retries) => {
      await backoffOrComeback(connection, retryDelayMs(retries));
      await connection.whenReachable();
    },
    on: {
      connected: () => connection.answered(),
      closed: (event) => {
        if (isRefusal(event)) options.onUnauthenticated?.();
        // The server went away (or the network did): find out now, so the page says so before its next request fails.
        else if (!OWN_CLOSES.has(closeCode(event) as number)) connection.check();
      },
    },
  });
  // A socket may look open long after the network under it is gone: once the server cannot be reached, it is closed
  // (its subscriptions wait in retryWait) and opened afresh when the server answers again.
  let wasReachable = connection.state.reachable;
  const stopFollowing = connection.subscribe(({ reachable }) => {
    if (wasReachable && !reachable) client.terminate();
    wasReachable = reachable;
  });
  return {
    ...client,
    dispose: () => {
      stopFollowing();
      return client.dispose();
    },
  };
}

/** Waits `delayMs`, or less if the server answers again meanwhile. */
function backoffOrComeback(connection: ConnectionMonitor, delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stopWaiting();
      resolve();
    };
    const timer = setTimeout(done, delayMs);
    const stopWaiting = connection.onComeback(done);
  });
}

export interface SubscriptionHandlers<Result> {
  next: (data: Result) => void;
  /** GraphQL errors arrive as an {@link ApiError}; a closed socket as the close event or error graphql-ws gives. */
  error?: (error: unknown) => void;
  complete?: () => void;
}

/** Subscribes with a typed document; returns the function that unsubscribes. */
export function subscribe<Result, Variables>(
  client: Client,
  document: TadaDocumentNode<Result, Variables>,
  variables: Variables,
  handlers: SubscriptionHandlers<Result>,
): () => void {
  return client.subscribe<Result>(
    { query: print(document), variables: variables as Record<string, unknown> },
    {
      next: (message) => {
        const errors = message.errors as readonly GraphQLErrorEntry[] | undefined;
        if (errors && errors.length > 0) {
          const [first] = errors;
          handlers.error?.(
            new ApiError(first?.message ?? "Subscription error", first?.extensions?.code ?? ErrorCode.InternalServerError, errors),
          );
          return;
        }
        if (message.data != null) handlers.next(message.data as Result);
      },
      error: (error) => handlers.error?.(error),
      complete: () => handlers.complete?.(),
    },
  );
}
