/**
 * One HTTP server: POST /graphql (Apollo), graphql-ws on the same path, /healthz, and the dashboard's static build at / with
 * client-side routes falling back to its SPA page.
 */
import http from "node:http";
import https from "node:https";
import type { MetricsAccess } from "../config.js";
import path from "node:path";
import type { Duplex } from "node:stream";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginDrainHttpServer } from "@apollo/server/plugin/drainHttpServer";
import { ApolloServerPluginCacheControlDisabled } from "@apollo/server/plugin/disabled";
import { expressMiddleware } from "@as-integrations/express5";
import express from "express";
import { GraphQLError, createSourceEventStream, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { type WebSocket, WebSocketServer } from "ws";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Services } from "../services/services.js";
import type { GraphQLContext } from "../graphql/context.js";
import { ROLE_RANK, type Principal } from "../domain/principal.js";
import { apiCodeOf, createErrorFormatter, formatErrorsOutsideApollo } from "../graphql/format-error.js";
import { subscribeShared } from "../graphql/shared-subscription.js";
import { executeCompiled } from "../graphql/compiled-execution.js";
import { CAIRN_VALIDATION_RULES, PARSE_OPTIONS, checkNesting, checkOperationAccess, prepareOperation } from "../graphql/operation-rules.js";
import { compiledGateway } from "./compiled-gateway.js";
import { createMetricsRouter } from "./metrics-route.js";
import { createGraphiqlRouter } from "./graphiql-route.js";
import { createDownloadRouter } from "./download-route.js";
import { createRunsExportRouter } from "./runs-export-route.js";
import { inlineScriptHashes, securityHeaders } from "./security-headers.js";
import { CLOSE_TRY_AGAIN_LATER, CLOSE_UNAUTHENTICATED, SocketGuard, closeReason, type GuardedConnection } from "./socket-guard.js";

export const DASHBOARD_DIR = fileURLToPath(new URL("../../dashboard/build", import.meta.url));

export interface HttpServerOptions {
  schema: GraphQLSchema;
  services: Services;
  log: Logger;
  maxBodyBytes: number;
  healthCheck: () => Promise<void>;
  /** Who may read /metrics. @default "off" */
  metrics?: MetricsAccess;
  dashboardDir?: string;
  /** How often open graphql-ws connections re-check their credential (tests shorten or lengthen it). */
  socketChecks?: { intervalMs?: number; debounceMs?: number };
  /** PEM certificate and key: HTTPS (and wss) instead of HTTP, on the same port. */
  tls?: { cert: string; key: string };
}

export interface RunningHttpServer {
  server: http.Server;
  listen(port: number, host: string): Promise<{ port: number }>;
  close(): Promise<void>;
}

export async function createHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const { schema, services, log } = options;
  const app = express();
  app.disable("x-powered-by");
  app.use(securityHeaders(await inlineScriptHashes(options.dashboardDir ?? DASHBOARD_DIR)));
  // An https.Server is an http.Server to everything used here (upgrade events, drain, listen); only the type says otherwise.
  const server = (
    options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, app) : http.createServer(app)
  ) as http.Server;

  // Upgrades routed here rather than by `new WebSocketServer({ server })`: attached to the HTTP server, ws re-emits its errors
  // (a busy PORT) and graphql-ws prints them raw, with a stack, before the start fails cleanly.
  const wsServer = new WebSocketServer({ noServer: true, maxPayload: options.maxBodyBytes });
  server.on("upgrade", (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (pathOf(request.url) !== "/graphql") {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    wsServer.handleUpgrade(request, socket, head, (ws) => {
      writeOncePerTurn(ws);
      wsServer.emit("connection", ws, request);
    });
  });
  // One error mapping for both transports: graphql-ws sends errors as graphql-js made them unless formatted here.
  const formatError = createErrorFormatter(log);
  const guard = new SocketGuard({
    authenticate: (authorization) => services.auth.authenticate(authorization),
    log,
    intervalMs: options.socketChecks?.intervalMs,
    debounceMs: options.socketChecks?.debounceMs,
  });
  const stopListening = services.auth.onCredentialsChanged(() => guard.credentialsChanged());
  const wsCleanup = useServer<{ authorization?: unknown }, { connection?: WsConnection }>(
    {
      schema,
      // Never an error's text in a close reason, whatever NODE_ENV says.
      isProd: true,
      onConnect: async (ctx) => {
        const socket = ctx.extra.socket;
        const authorization = ctx.connectionParams?.authorization;
        // graphql-ws would close a refusal with 4403 (forbidden); a missing or dead credential is 4401, as when it dies later.
        if (typeof authorization !== "string" || authorization.trim() === "") {
          socket.close(CLOSE_UNAUTHENTICATED, 'Unauthenticated: send connectionParams { authorization: "Bearer <token>" }.');
          return false;
        }
        try {
          const principal = await services.auth.authenticate(authorization);
          if (!principal) throw new CairnError(ErrorCode.Unauthenticated, "Sign in again.");
          const connection = new WsConnection(authorization, principal, socket);
          ctx.extra.connection = connection;
          guard.add(connection);
          return true;
        } catch (error) {
          if (error instanceof CairnError && error.code === ErrorCode.Unauthenticated) {
            socket.close(CLOSE_UNAUTHENTICATED, closeReason(`Unauthenticated: ${error.message}`));
          } else {
            log.warn({ err: error }, "could not authenticate a graphql-ws connection");
            socket.close(CLOSE_TRY_AGAIN_LATER, "Cannot check the credentials right now; try again.");
          }
          return false;
        }
      },
      onSubscribe: async (ctx, id, payload) => {
        const connection = ctx.extra.connection;
        if (!connection) return [new GraphQLError("Sign in first.", { extensions: { code: "UNAUTHENTICATED" } })];
        try {
          // Every operation is checked against the credential as it is now, not as it was at connection_init.
          let principal: GraphQLContext["principal"];
          try {
            principal = await services.auth.authenticate(connection.authorization);
          } catch (error) {
            if (error instanceof CairnError && error.code === ErrorCode.Unauthenticated) guard.credentialsChanged();
            return [new GraphQLError(error instanceof Error ? error.message : "Sign in again.", { originalError: asError(error) })];
          }
          if (!principal) return [new GraphQLError("Sign in again.", { extensions: { code: "UNAUTHENTICATED" } })];
          // A lower role is the guard's to apply: it first checks the subscriptions already running (4403 if one is refused).
          if (ROLE_RANK[principal.role] < ROLE_RANK[connection.principal.role]) guard.credentialsChanged();
          else connection.principal = principal;
          const prepared = prepareOperation(schema, payload, principal, "WS");
          if (!("document" in prepared)) return prepared;
          const contextValue: GraphQLContext = {
            principal,
            services,
            log,
            clientAddress: ctx.extra.request.socket.remoteAddress,
            transport: "WS",
          };
          const args = {
            schema,
            document: prepared.document,
            operationName: payload.operationName,
            variableValues: payload.variables,
            contextValue,
          };
          if (prepared.operation.operation === "subscription") connection.subscriptions.set(id, args);
          else connection.began(id);
          return args;
        } catch (error) {
          // Thrown out of onSubscribe, graphql-ws would close the socket with the error's text: answer it as an error instead.
          return [new GraphQLError("Internal error.", { originalError: asError(error) })];
        }
      },
      // graphql-js throws (rather than answers) on some malformed calls: an answer, formatted like the rest.
      execute: (args) => safely(() => executeCompiled(args)),
      // Each event executed once per distinct operation and role, not once per subscriber (graphql/shared-subscription.ts).
      subscribe: (args) => safely(() => subscribeShared(args)),
      onNext: (_ctx, _id, _payload, _args, result) => {
        if (!result.errors?.length) return;
        return { ...result, errors: formatErrorsOutsideApollo(formatError, result.errors) };
      },
      onError: (ctx, id, _payload, errors) => {
        const connection = ctx.extra.connection;
        connection?.subscriptions.delete(id);
        // graphql-ws sends the error right after this hook: the operation ends once that send is under way.
        if (connection) setImmediate(() => connection.ended(id));
        return formatErrorsOutsideApollo(formatError, errors);
      },
      onComplete: (ctx, id) => {
        const connection = ctx.extra.connection;
        connection?.subscriptions.delete(id);
        // Called once a query's or mutation's result was sent, but before graphql-ws sends its `complete` (right after this
        // hook): the operation ends once that send is under way, else a close waiting for it would cut the `complete` off.
        if (connection) setImmediate(() => connection.ended(id));
      },
      onClose: (ctx) => {
        if (ctx.extra.connection) guard.remove(ctx.extra.connection);
      },
    },
    wsServer,
  );

  const apollo = new ApolloServer<GraphQLContext>({
    // Our schema, each operation executed by its compiled function (compiled-gateway.ts).
    gateway: compiledGateway(schema),
    formatError,
    validationRules: [...CAIRN_VALIDATION_RULES],
    parseOptions: PARSE_OPTIONS,
    // Automatic persisted queries: no client of Cairn uses them, and a cache clients fill is one more thing to bound. A request
    // with a persistedQuery extension is answered PERSISTED_QUERY_NOT_SUPPORTED (clients then send the query itself).
    persistedQueries: false,
    includeStacktraceInErrorResponses: false,
    // Our composition root stops everything in order on SIGINT/SIGTERM; Apollo's own handlers would race it and re-raise
    // the signal, leaving the shutdown hanging.
    stopOnTerminationSignals: false,
    introspection: true,
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer: server }),
      // Cairn sends no cache hints; Apollo's default cache-control plugin would wrap every field's resolver to look for them.
      ApolloServerPluginCacheControlDisabled(),
      {
        // The check graphql-ws makes in prepareOperation that Apollo's own pipeline does not: the transport and the caller,
        // once the operation is known (nesting is checked before Apollo, below).
        async requestDidStart() {
          return {
            async didResolveOperation({ document, operation, contextValue }) {
              if (!operation) return;
              const refused = checkOperationAccess(document, operation, contextValue.principal, "HTTP");
              if (refused) throw refused;
            },
          };
        },
      },
      {
        async serverWillStart() {
          return {
            async drainServer() {
              stopListening();
              await guard.stop();
              await wsCleanup.dispose();
            },
          };
        },
      },
    ],
  });
  await apollo.start();

  app.get("/healthz", async (_req, res) => {
    try {
      await options.healthCheck();
      res.json({ status: "ok" });
    } catch (error) {
      log.warn({ err: error }, "health check failed");
      // The reason is for an operator's probe: a CairnError's sentence (written for people), never a driver's raw text.
      const reason = error instanceof CairnError ? error.message : "database unreachable";
      res.status(503).json({ status: "unavailable", error: reason });
    }
  });

  app.use(createDownloadRouter(services, log));
  app.use(createRunsExportRouter(services, log));
  app.use(createMetricsRouter(services, options.metrics ?? "off", log));
  app.use(createGraphiqlRouter(log));

  app.use(
    "/graphql",
    express.json({ limit: options.maxBodyBytes }),
    // Before Apollo parses: a literal nested thousands deep overflows graphql-js's stack (Apollo's plugins run too late to
    // answer it as a client error).
    (req: express.Request, res: express.Response, next: express.NextFunction) => {
      const request = graphqlRequestOf(req);
      const refused = request && checkNesting(request.query, request.variables);
      if (!refused) return next();
      res.status(400).json({ errors: [formatError(refused.toJSON(), refused)] });
    },
    expressMiddleware(apollo, {
      context: async ({ req }): Promise<GraphQLContext> => {
        const receivedAt = performance.now();
        const principal = await services.auth.authenticate(req.headers.authorization, receivedAt).catch((error: unknown) => {
          if (error instanceof CairnError) throw toHttpGraphQLError(error);
          throw error;
        });
        return { principal, services, log, clientAddress: req.socket.remoteAddress, transport: "HTTP", receivedAt };
      },
    }),
  );

  const dashboardDir = options.dashboardDir ?? DASHBOARD_DIR;
  if (existsSync(dashboardDir)) {
    app.use(express.static(dashboardDir, { extensions: ["html"], index: "index.html" }));
    const spaPage = path.join(dashboardDir, "200.html");
    app.get(/^(?!\/graphql|\/healthz|\/download|\/metrics).*/, (req, res, next) => {
      if (req.method !== "GET" || !existsSync(spaPage)) return next();
      res.sendFile(spaPage);
    });
  } else {
    log.warn({ dashboardDir }, "dashboard build not found: run `npm run build:dashboard`; the API works without it");
  }

  // Body parser and other middleware errors: a clear JSON answer without a stack trace.
  app.use((error: Error & { status?: number; type?: string }, _req: express.Request, res: express.Response, next: express.NextFunction) => {
    if (res.headersSent) return next(error);
    const status = error.status ?? 500;
    if (status >= 500) log.error({ err: error }, "HTTP request failed");
    const message =
      error.type === "entity.too.large"
        ? `The request body is larger than ${options.maxBodyBytes} bytes.`
        : error.type === "entity.parse.failed"
          ? "The request body is not valid JSON."
          : status >= 500
            ? "Internal error."
            : error.message;
    res.status(status).json({ errors: [{ message, extensions: { code: status >= 500 ? "INTERNAL_SERVER_ERROR" : "BAD_REQUEST" } }] });
  });

  return {
    server,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve({ port: (server.address() as { port: number }).port });
        });
      }),
    async close() {
      await apollo.stop();
      wsServer.close();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An authentication failure before any resolver runs: Apollo answers it as a GraphQL error with our code. */
function toHttpGraphQLError(error: CairnError): GraphQLError {
  return new GraphQLError(error.message, { extensions: { code: "UNAUTHENTICATED", http: { status: 401 } } });
}

function pathOf(url: string | undefined): string | undefined {
  try {
    return new URL(url ?? "/", "http://cairn").pathname;
  } catch {
    return undefined;
  }
}

/** The query text and variables of a GraphQL request over HTTP (POST body or GET parameters), when it has them. */
function graphqlRequestOf(req: express.Request): { query: string; variables: unknown } | undefined {
  const source: unknown = req.method === "GET" ? req.query : req.body;
  if (!source || typeof source !== "object" || Array.isArray(source)) return undefined;
  const { query, variables } = source as { query?: unknown; variables?: unknown };
  if (typeof query !== "string") return undefined;
  if (typeof variables !== "string") return { query, variables };
  try {
    return { query, variables: JSON.parse(variables) };
  } catch {
    return { query, variables: undefined }; // Apollo answers unreadable variables itself
  }
}

/**
 * The messages sent to one socket in one turn of the event loop (a run's and its task's progress, published together) leave
 * in one write: with a thousand sockets following a run, a system call per message was most of the server's time.
 */
function writeOncePerTurn(ws: WebSocket): void {
  const socket = (ws as unknown as { _socket?: Duplex })._socket;
  if (!socket) return;
  const send = ws.send.bind(ws);
  let corked = false;
  ws.send = ((...args: Parameters<WebSocket["send"]>) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(() => {
        corked = false;
        socket.uncork();
      });
    }
    return (send as (...a: Parameters<WebSocket["send"]>) => void)(...args);
  }) as WebSocket["send"];
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

async function safely<T>(run: () => T | Promise<T>): Promise<T | ExecutionResult> {
  try {
    return await run();
  } catch (error) {
    return { errors: [new GraphQLError("Internal error.", { originalError: asError(error) })] };
  }
}

/** How long a socket whose credential died may stay open for the answers of the operations it was running. */
const CLOSE_WAIT_MS = 10_000;

/** One graphql-ws connection as the socket guard sees it, with its live subscriptions. */
class WsConnection implements GuardedConnection {
  /** The execution arguments of each live subscription, by operation id: re-checked when the role goes down. */
  readonly subscriptions = new Map<string, ExecutionArgs>();
  /** The queries and mutations under way, by operation id. */
  private readonly answering = new Set<string>();
  private closing: { code: number; reason: string } | undefined;
  private closed = false;
  private current: Principal;

  constructor(
    readonly authorization: string,
    principal: Principal,
    private readonly socket: { close(code: number, reason: string): void },
  ) {
    this.current = principal;
  }

  get principal(): Principal {
    return this.current;
  }

  /** A subscription's events are resolved long after it started: they see the principal as last checked. */
  set principal(principal: Principal) {
    this.current = principal;
    for (const args of this.subscriptions.values()) (args.contextValue as GraphQLContext).principal = principal;
  }

  /**
   * Closes now, or once the queries and mutations under way have sent their answers (at most {@link CLOSE_WAIT_MS}): a
   * `logout` over this socket kills the credential it runs with, and its own answer must still reach the client.
   */
  close(code: number, reason: string): void {
    if (this.answering.size === 0) {
      this.socket.close(code, reason);
      return;
    }
    if (this.closing) return;
    this.closing = { code, reason };
    setTimeout(() => this.closeNow(), CLOSE_WAIT_MS).unref();
  }

  /** A query or mutation began on this socket. */
  began(id: string): void {
    this.answering.add(id);
  }

  /** A query or mutation ended (its answer sent). */
  ended(id: string): void {
    this.answering.delete(id);
    if (this.answering.size === 0 && this.closing) this.closeNow();
  }

  private closeNow(): void {
    const closing = this.closing;
    if (!closing || this.closed) return;
    this.closed = true;
    this.socket.close(closing.code, closing.reason);
  }

  /**
   * Runs each subscription's `subscribe` again as `principal` (a source it opens is closed at once): a FORBIDDEN or
   * UNAUTHENTICATED answer means not allowed; any other failure (the job was deleted since) is not this check's business.
   */
  async stillAllowed(principal: Principal): Promise<boolean> {
    for (const args of this.subscriptions.values()) {
      const context = { ...(args.contextValue as GraphQLContext), principal };
      const result = await createSourceEventStream({ ...args, contextValue: context });
      if (Symbol.asyncIterator in result) {
        await (result as AsyncIterableIterator<unknown>).return?.();
        continue;
      }
      const codes = (result.errors ?? []).map((error) => apiCodeOf(error));
      if (codes.includes("FORBIDDEN") || codes.includes("UNAUTHENTICATED")) return false;
    }
    return true;
  }
}
