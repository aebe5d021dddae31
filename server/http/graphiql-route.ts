/**
 * GET /graphiql: GraphiQL, bundled at build time into graphiql/build (scripts/build-graphiql.ts) and served from here, never
 * from a CDN. The page itself is a shell holding no data, like the dashboard's pages: it signs in with the dashboard's token
 * (the session lives in the browser, not in a cookie the server could read), and sends a visitor without one to the sign-in
 * page. Its script is a file, not inline, so the dashboard's Content-Security-Policy applies unchanged.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import express, { type Router } from "express";
import type { Logger } from "../log.js";

export const GRAPHIQL_DIR = fileURLToPath(new URL("../../graphiql/build", import.meta.url));

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>GraphiQL · Cairn</title>
    <link rel="icon" href="/favicon.svg">
    <link rel="stylesheet" href="/graphiql/graphiql.css">
    <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
    <script type="module" src="/graphiql/graphiql.js"></script>
  </head>
  <body>
    <div id="graphiql"><noscript>GraphiQL needs JavaScript. The API answers at /graphql without it.</noscript></div>
  </body>
</html>
`;

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GraphiQL · Cairn</title></head>
<body><p>GraphiQL is not built on this server: run <code>npm run build:graphiql</code> (or <code>npm start</code>, which builds it).
The API itself answers at <code>/graphql</code>.</p></body></html>
`;

export function createGraphiqlRouter(log: Logger, dir = GRAPHIQL_DIR): Router {
  const router = express.Router();
  const built = () => existsSync(`${dir}/graphiql.js`);
  if (!built()) log.warn({ dir }, "GraphiQL build not found: run `npm run build:graphiql`; /graphiql says so");
  router.get(["/graphiql", "/graphiql/"], (_req, res) => {
    // Checked on each request: a build made after the start is served without a restart.
    res.setHeader("Cache-Control", "no-cache");
    if (!built()) return void res.status(503).type("html").send(NOT_BUILT);
    res.type("html").send(PAGE);
  });
  router.use("/graphiql", express.static(dir, { dotfiles: "ignore", index: false, fallthrough: false, maxAge: 0 }));
  return router;
}
