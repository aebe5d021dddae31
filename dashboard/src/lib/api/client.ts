/**
 * The dashboard's GraphQL-over-HTTP client: POST to `/graphql` on the same origin, JSON in and out, the
 * session's bearer token in `Authorization`. Deliberately small: no cache. It tells the connection monitor whether the
 * server answered; while the monitor is watched (the signed-in app), a query that gets no answer waits for the server to
 * answer again and is sent again, so a page keeps what it shows instead of an error. A mutation is never sent twice.
 */
import { print } from "@0no-co/graphql.web";
import type { TadaDocumentNode } from "gql.tada";
import { connection as appConnection, GATEWAY_FAILURES, type ConnectionMonitor } from "../connection.js";
import { ApiError, ErrorCode, isUnreachable, type GraphQLErrorEntry } from "./errors.js";

export interface ApiClientOptions {
  /**
   * Where GraphQL is served.
   * @default "/graphql" (the Cairn server serves the dashboard and the API on one origin)
   */
  url?: string;
  /**
   * The fetch to use.
   * @default globalThis.fetch
   */
  fetch?: typeof globalThis.fetch;
  /** Returns the bearer token to send, or null to send none. Read on every request. */
  token?: () => string | null;
  /**
   * Called when the server answers UNAUTHENTICATED to a request that carried a token (the token expired
   * or was revoked); the request still rejects with the error. Not called for a failed sign-in, which
   * carries no token.
   */
  onUnauthenticated?: (error: ApiError) => void;
  /**
   * Told whether each request got an answer; while it is watched, queries without an answer wait for it.
   * @default the app's monitor ($lib/connection)
   */
  connection?: ConnectionMonitor;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** Sends typed operations; see {@link createApiClient}. */
export interface ApiClient {
  /**
   * Runs a query or mutation and resolves with its `data`.
   * Rejects with an {@link ApiError}: the first GraphQL error's message and `extensions.code` when the
   * response has `errors` (even with partial data), `NETWORK_ERROR` when no answer came, `BAD_RESPONSE`
   * when the answer was not GraphQL. An aborted request rejects with the signal's reason. A query that gets no answer
   * while the connection is watched does not reject: it is sent again once the server answers.
   */
  request<Result, Variables>(
    document: TadaDocumentNode<Result, Variables>,
    variables: Variables,
    options?: RequestOptions,
  ): Promise<Result>;
}

interface GraphQLResponse {
  data?: unknown;
  errors?: GraphQLErrorEntry[];
}

/** Creates a client; cheap, one per app. */
export function createApiClient(options: ApiClientOptions = {}): ApiClient {
  const url = options.url ?? "/graphql";
  const token = options.token ?? (() => null);
  const connection = options.connection ?? appConnection;

  async function send<Result, Variables>(
    document: TadaDocumentNode<Result, Variables>,
    variables: Variables,
    requestOptions: RequestOptions,
  ): Promise<Result> {
    const bearer = token();
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/graphql-response+json, application/json",
    };
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    const definition = document.definitions.find((d) => d.kind === "OperationDefinition");
    const operationName = definition && "name" in definition ? definition.name?.value : undefined;

    let response: Response;
    try {
      // Called unbound: window.fetch throws "Illegal invocation" when called as a method of another object.
      const fetchImpl = options.fetch ?? globalThis.fetch;
      response = await fetchImpl(url, {
        method: "POST",
        headers,
        body: JSON.stringify({ query: print(document), variables, operationName }),
        signal: requestOptions.signal,
      });
    } catch (cause) {
      if (requestOptions.signal?.aborted) throw requestOptions.signal.reason;
      throw new ApiError(
        `Could not reach the Cairn server (${describe(cause)}). Check that it is running and that this machine can reach it, then try again.`,
        ErrorCode.Network,
        [],
        { cause },
      );
    }

    const body = await readGraphQLResponse(response);
    if (body.errors && body.errors.length > 0) {
      const [first] = body.errors;
      const error = new ApiError(
        first?.message || "The server returned an error without a message.",
        first?.extensions?.code ?? ErrorCode.InternalServerError,
        body.errors,
      );
      if (bearer && body.errors.some((e) => e.extensions?.code === ErrorCode.Unauthenticated)) {
        options.onUnauthenticated?.(error);
      }
      throw error;
    }
    if (body.data === undefined || body.data === null) {
      throw new ApiError(`The server answered HTTP ${response.status} with neither data nor errors.`, ErrorCode.BadResponse, [], {
        unreachable: GATEWAY_FAILURES.has(response.status),
      });
    }
    return body.data as never;
  }

  return {
    async request(document, variables, requestOptions = {}) {
      const definition = document.definitions.find((d) => d.kind === "OperationDefinition");
      const isQuery = definition !== undefined && "operation" in definition && definition.operation === "query";
      for (;;) {
        try {
          const data = await send(document, variables, requestOptions);
          connection.answered();
          return data;
        } catch (error) {
          if (!isUnreachable(error)) {
            if (error instanceof ApiError) connection.answered(); // a GraphQL error is an answer too
            throw error;
          }
          connection.unreachable();
          // Reading again is harmless; a mutation that got no answer may still have been applied, so it is never resent.
          if (!isQuery || !connection.watching) throw error;
          await connection.whenReachable(requestOptions.signal);
        }
      }
    },
  };
}

async function readGraphQLResponse(response: Response): Promise<GraphQLResponse> {
  const type = response.headers.get("content-type") ?? "";
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  // A proxy's "bad gateway", "unavailable" or "timeout" without GraphQL in it: Cairn behind it did not answer.
  const unreachable = GATEWAY_FAILURES.has(response.status);
  if (!type.includes("json")) {
    throw new ApiError(
      `The server answered ${status} with ${type || "no content type"} instead of a GraphQL response. Is /graphql served by Cairn?`,
      ErrorCode.BadResponse,
      [],
      { unreachable },
    );
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch (cause) {
    throw new ApiError(`The server answered ${status} with JSON that could not be read.`, ErrorCode.BadResponse, [], {
      cause,
      unreachable,
    });
  }
  if (typeof body !== "object" || body === null) {
    throw new ApiError(`The server answered ${status} with JSON that is not a GraphQL response.`, ErrorCode.BadResponse, [], {
      unreachable,
    });
  }
  return body as GraphQLResponse;
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
