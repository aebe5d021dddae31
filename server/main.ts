/**
 * The composition root: configuration -> database -> services -> HTTP. Nothing else lives here.
 * `npm start` runs this file; SIGINT/SIGTERM drain HTTP and websockets, stop the embedded database and exit 0.
 */
import "reflect-metadata";
import { startCairn } from "./app.js";
import { loadConfig } from "./config.js";
import { CairnError, messageOf } from "./errors.js";

let config;
try {
  config = loadConfig();
} catch (error) {
  console.error(error instanceof CairnError ? error.message : `Cairn could not read its configuration: ${messageOf(error)}`);
  process.exit(2);
}

// stdout carries JSON log lines only (a log shipper parses every line): what a person should read goes to stderr, and Node's
// own warnings (deprecations from a dependency) become log lines instead of free text.
process.removeAllListeners("warning");

try {
  const cairn = await startCairn(config);
  process.on("warning", (warning) => cairn.log.warn({ warning: { name: warning.name, message: warning.message } }, "Node.js warning"));
  // Printed for a person (not only the JSON log) so that a newcomer sees it: the generated password is shown this once.
  console.error(
    cairn.generatedAdminPassword
      ? `\n  Cairn is ready at ${cairn.url}\n  Sign in as admin with the password: ${cairn.generatedAdminPassword}\n  (shown once; set ADMIN_PASSWORD before the first start to choose it)\n`
      : `\n  Cairn is ready at ${cairn.url} (sign in as admin)\n`,
  );
  // For a person, like the password: what the browser shows before the certificate is accepted is compared with this.
  if (cairn.tls) {
    const { fingerprint, selfSigned, created, certPath } = cairn.tls;
    const origin = selfSigned ? `self-signed${created ? ", made on this start" : ""}, ${certPath}` : certPath;
    console.error(`  TLS certificate (${origin})\n  SHA-256 fingerprint: ${fingerprint}\n`);
  }
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
  console.error(`Cairn could not start: ${startFailure(error)}`);
  process.exit(1);
}

/** Why the start failed, for a person: our own errors by their message, a busy port in words, anything else by its message. */
function startFailure(error: unknown): string {
  if (error instanceof CairnError) return error.message;
  const { code, port, address } = error as { code?: string; port?: number; address?: string };
  if (code === "EADDRINUSE")
    return `port ${port} on ${address} is already in use by another program. Stop that program or set PORT to a free port.`;
  if (code === "EACCES")
    return `no permission to listen on port ${port} on ${address}. Use a port above 1023 or run with the right capability.`;
  return messageOf(error);
}
