/**
 * server/config.ts: every setting read from the environment once, with defaults, and a start refused with a message that names
 * each bad variable, what it held and what was expected (never echoing a secret).
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../server/config.js";
import { CairnError } from "../../server/errors.js";

const cwd = "/srv/cairn";

/** The message loadConfig throws for `env`, or fails the test when it accepts it. */
function configError(env: Record<string, string>): string {
  try {
    loadConfig(env, cwd);
  } catch (error) {
    expect(error).toBeInstanceOf(CairnError);
    return (error as Error).message;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("gives the documented defaults for an empty environment", () => {
    const config = loadConfig({}, cwd);
    expect(config).toMatchObject({
      port: 4000,
      host: "127.0.0.1",
      dataDir: path.join(cwd, "data"),
      databaseUrl: undefined,
      databasePort: 54329,
      adminPassword: undefined,
      secretKey: undefined,
      lab: true,
      labPools: 1,
      labPort: 4001,
      labDiskMb: 64,
      logLevel: "info",
      sessionHours: 12,
      maxBodyBytes: 1024 * 1024,
    });
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ PORT: "", LAB: "", LOG_LEVEL: "", DATABASE_URL: "" }, cwd)).toMatchObject({
      port: 4000,
      lab: true,
      logLevel: "info",
      databaseUrl: undefined,
    });
  });

  it("reads every variable it documents", () => {
    const hexKey = "ab".repeat(32);
    const config = loadConfig(
      {
        PORT: "8080",
        HOST: "0.0.0.0",
        DATA_DIR: "var/cairn",
        DATABASE_URL: "postgresql://cairn:pw@db.example:5432/cairn",
        DATABASE_PORT: "6543",
        ADMIN_PASSWORD: "a long password",
        SECRET_KEY: hexKey,
        LAB: "off",
        LAB_POOLS: "3",
        LAB_PORT: "0",
        LAB_DISK_MB: "8",
        LOG_LEVEL: "debug",
      },
      cwd,
    );
    expect(config).toMatchObject({
      port: 8080,
      host: "0.0.0.0",
      dataDir: path.join(cwd, "var/cairn"),
      databaseUrl: "postgresql://cairn:pw@db.example:5432/cairn",
      databasePort: 6543,
      adminPassword: "a long password",
      lab: false,
      labPools: 3,
      labPort: 0,
      labDiskMb: 8,
      logLevel: "debug",
    });
    expect(config.secretKey).toEqual(Buffer.from(hexKey, "hex"));
  });

  it("keeps an absolute DATA_DIR as it is and accepts a base64 SECRET_KEY and postgres:// URLs", () => {
    const key = Buffer.alloc(32, 7);
    const config = loadConfig({ DATA_DIR: "/var/lib/cairn", SECRET_KEY: key.toString("base64"), DATABASE_URL: "postgres://h/db" }, cwd);
    expect(config.dataDir).toBe("/var/lib/cairn");
    expect(config.secretKey).toEqual(key);
    expect(config.databaseUrl).toBe("postgres://h/db");
  });

  it.each([
    ["on", true],
    ["TRUE", true],
    ["1", true],
    ["yes", true],
    ["off", false],
    ["False", false],
    ["0", false],
    ["no", false],
  ])("reads LAB=%s as %s", (value, expected) => {
    expect(loadConfig({ LAB: value }, cwd).lab).toBe(expected);
  });

  it.each([
    ["PORT", "abc", 'PORT="abc": expected a whole number from 0 to 65535'],
    ["PORT", "70000", 'PORT="70000": expected a whole number from 0 to 65535'],
    ["PORT", "-1", 'PORT="-1": expected a whole number from 0 to 65535'],
    ["DATABASE_PORT", "0", 'DATABASE_PORT="0": expected a whole number from 1 to 65535'],
    ["LAB", "maybe", 'LAB="maybe": expected on or off'],
    ["LAB_DISK_MB", "4", 'LAB_DISK_MB="4": expected a whole number from 8 to'],
    ["LOG_LEVEL", "loud", 'LOG_LEVEL="loud": expected one of fatal, error, warn, info, debug, trace, silent'],
    ["DATABASE_URL", "mysql://root@localhost/cairn", "DATABASE_URL: expected a postgresql:// connection string"],
    ["ADMIN_PASSWORD", "short", "ADMIN_PASSWORD: expected at least 8 characters"],
  ])("refuses %s=%s with a message naming it", (name, value, expected) => {
    const message = configError({ [name]: value });
    expect(message).toContain("Invalid configuration");
    expect(message).toContain(expected);
  });

  it("refuses a SECRET_KEY that is not 32 bytes, without echoing it", () => {
    for (const key of ["ab".repeat(16), "ab".repeat(33), Buffer.alloc(31, 1).toString("base64")]) {
      const message = configError({ SECRET_KEY: key });
      expect(message).toContain("SECRET_KEY");
      expect(message).toContain("expected 32 bytes, as 64 hex digits or base64");
      expect(message).not.toContain(key);
    }
  });

  it("does not echo the DATABASE_URL (it may hold a password) nor the ADMIN_PASSWORD", () => {
    const message = configError({ DATABASE_URL: "mysql://root:hunter22@db/cairn", ADMIN_PASSWORD: "pw1234" });
    expect(message).not.toContain("hunter22");
    expect(message).not.toContain("pw1234");
  });

  it("names every bad variable at once, one per line", () => {
    const message = configError({
      PORT: "abc",
      LAB: "maybe",
      SECRET_KEY: "c2hvcnQ=",
      LOG_LEVEL: "loud",
      DATABASE_URL: "mysql://localhost/cairn",
    });
    const lines = message
      .split("\n")
      .slice(1)
      .map((line) => line.trim());
    expect(lines.map((line) => line.split(/[=:]/)[0])).toEqual(["PORT", "SECRET_KEY", "LAB", "LOG_LEVEL", "DATABASE_URL"]);
  });
});
