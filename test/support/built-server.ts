/**
 * The server as `npm start` runs it: dist/server/main.js under plain node. Built first when a source is newer than the build
 * (scripts/build-server.ts, which holds a lock so that test files running in parallel build once).
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SERVER_NODE_FLAGS, buildServerIfStale } from "../../scripts/build-server.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const BUILT_MAIN = path.join(REPO, "dist", "server", "main.js");

/** The command line of the built server (after building it when stale): `[node, ...flags, dist/server/main.js]`. */
export function builtServerCommand(): [string, string[]] {
  buildServerIfStale();
  return [process.execPath, [...SERVER_NODE_FLAGS, BUILT_MAIN]];
}
