/**
 * Live updates over graphql-ws, on the same path as HTTP GraphQL (`ws(s)://<host>/graphql`), authenticated
 * with `connectionParams: { authorization: "Bearer <token>" }` (API.md). Pages that show live progress
 * create one client for the app and call {@link subscribe}.
 */
import { createClient, type Client } from "graphql-ws";
import { print } from "@0no-co/graphql.web";
import type { TadaDocumentNode } from "gql.tada";
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
}

/** Close codes of a refused `connection_init` (graphql-ws `CloseCode.Unauthorized` and `CloseCode.Forbidden`). */
const REFUSED = new Set([4401, 4403]);

function isRefusal(event: unknown): boolean {
  return typeof event === "object" && event !== null && REFUSED.has((event as { code?: unknown }).code as number);
}

/** A lazy graphql-ws client: it connects at the first subscription and closes after the last one ends. */
export function createSubscriptionClient(options: SubscriptionClientOptions): Client {
  return createClient({
    url: options.url ?? subscriptionUrl(globalThis.location),
    lazy: true,
    webSocketImpl: options.webSocketImpl,
    connectionParams: () => {
      const token = options.token();
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    // graphql-ws retries a refusal by default ("access might be granted later"); the same token never is.
    shouldRetry: (event) => !isRefusal(event),
    on: {
      closed: (event) => {
        if (isRefusal(event)) options.onUnauthenticated?.();
      },
    },
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
