/**
 * One HTTP server: POST /graphql (Apollo), graphql-ws on the same path, /healthz, and the dashboard's static build at / with
 * client-side routes falling back to its SPA page.
 */
import http from "node:http";
import path from "node:path";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginDrainHttpServer } from "@apollo/server/plugin/drainHttpServer";
import { expressMiddleware } from "@as-integrations/express5";
import express from "express";
import { GraphQLError, type GraphQLSchema } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Services } from "../services/services.js";
import type { GraphQLContext } from "../graphql/context.js";
import { createErrorFormatter } from "../graphql/format-error.js";
import { queryLimitsRule } from "../graphql/query-limits.js";
import { createDownloadRouter } from "./download-route.js";

export const DASHBOARD_DIR = fileURLToPath(new URL("../../dashboard/build", import.meta.url));

export interface HttpServerOptions {
  schema: GraphQLSchema;
  services: Services;
  log: Logger;
  maxBodyBytes: number;
  healthCheck: () => Promise<void>;
  dashboardDir?: string;
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
  const server = http.createServer(app);

  const wsServer = new WebSocketServer({ server, path: "/graphql", maxPayload: options.maxBodyBytes });
  // One error mapping for both transports: graphql-ws sends execution errors as graphql-js made them unless formatted here.
  const formatError = createErrorFormatter(log);
  const wsCleanup = useServer<{ authorization?: string }, { principal?: GraphQLContext["principal"] }>(
    {
      schema,
      validate: undefined,
      onConnect: async (ctx) => {
        try {
          const principal = await services.auth.authenticate(ctx.connectionParams?.authorization);
          if (!principal) return false;
          ctx.extra.principal = principal;
          return true;
        } catch (error) {
          // Refused either way; a token refused is routine, anything else (the database) is logged.
          if (!(error instanceof CairnError && error.code === ErrorCode.Unauthenticated))
            log.warn({ err: error }, "could not authenticate a subscription connection");
          return false;
        }
      },
      context: (ctx): GraphQLContext => ({
        principal: ctx.extra.principal,
        services,
        log,
        clientAddress: ctx.extra.request.socket.remoteAddress,
        transport: "WS",
      }),
      onError: (_ctx, _id, _payload, errors) => {
        log.debug({ errors: errors.map((e) => e.message) }, "subscription error");
      },
      onNext: (_ctx, _id, _payload, _args, result) => {
        if (!result.errors?.length) return;
        return {
          ...result,
          errors: result.errors.map((error) => (error instanceof GraphQLError ? formatError(error.toJSON(), error) : error)),
        };
      },
    },
    wsServer,
  );

  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    formatError,
    validationRules: [queryLimitsRule()],
    includeStacktraceInErrorResponses: false,
    // Our composition root stops everything in order on SIGINT/SIGTERM; Apollo's own handlers would race it and re-raise
    // the signal, leaving the shutdown hanging.
    stopOnTerminationSignals: false,
    introspection: true,
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer: server }),
      {
        async serverWillStart() {
          return {
            async drainServer() {
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

  app.use(
    "/graphql",
    express.json({ limit: options.maxBodyBytes }),
    expressMiddleware(apollo, {
      context: async ({ req }): Promise<GraphQLContext> => {
        const principal = await services.auth.authenticate(req.headers.authorization).catch((error: unknown) => {
          if (error instanceof CairnError) throw toHttpGraphQLError(error);
          throw error;
        });
        return { principal, services, log, clientAddress: req.socket.remoteAddress, transport: "HTTP" };
      },
    }),
  );

  const dashboardDir = options.dashboardDir ?? DASHBOARD_DIR;
  if (existsSync(dashboardDir)) {
    app.use(express.static(dashboardDir, { extensions: ["html"], index: "index.html" }));
    const spaPage = path.join(dashboardDir, "200.html");
    app.get(/^(?!\/graphql|\/healthz|\/download).*/, (req, res, next) => {
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
