/**
 * The composition root: configuration -> database -> services -> HTTP. Nothing else lives here.
 * `npm start` runs this file; SIGINT/SIGTERM drain HTTP and websockets, stop the embedded database and exit 0.
 */
import "reflect-metadata";
import { startCairn } from "./app.js";
import { loadConfig } from "./config.js";
import { CairnError } from "./errors.js";

let config;
try {
  config = loadConfig();
} catch (error) {
  console.error(error instanceof CairnError ? error.message : error);
  process.exit(2);
}

try {
  const cairn = await startCairn(config);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    cairn.log.info({ signal }, "stopping");
    const forced = setTimeout(() => {
      cairn.log.error("shutdown took longer than 20 s: exiting");
      process.exit(1);
    }, 20_000);
    forced.unref();
    await cairn.stop();
    process.exit(0);
  };
  // A promise some library left unobserved must not take every running backup down with the process: log it loudly (it is
  // a bug to fix) and keep serving. The test suite fails on any unhandled rejection, so they are caught before release.
  process.on("unhandledRejection", (reason) =>
    cairn.log.error({ err: reason }, "unhandled promise rejection (a bug): the process keeps running"),
  );
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
} catch (error) {
  console.error(error instanceof CairnError ? `Cairn could not start: ${error.message}` : error);
  process.exit(1);
}
