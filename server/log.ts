/** Structured logs: one JSON line per event (pino). Secrets are redacted by path wherever they might appear. */
import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "cairn" },
      redact: {
        paths: ["password", "*.password", "*.*.password", "token", "*.token", "authorization", "*.authorization", "secret", "*.secret"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
