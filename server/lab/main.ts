import { startLabPools } from "./index.js";

/** `npm run lab`: the lab as a standalone XAPI pool (see server/lab/README.md for the environment). */
function integerEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    console.error(`${name} must be a non-negative integer, got "${text}"`);
    process.exit(2);
  }
  return value;
}

const port = integerEnv("LAB_PORT", 4001);
const count = integerEnv("LAB_POOLS", 1);
const diskMb = integerEnv("LAB_DISK_MB", 64);
const user = process.env.LAB_USER || "root";
const password = process.env.LAB_PASSWORD || "lab";
const dir = process.env.LAB_DIR || "./data/lab";

const labs = await startLabPools(Math.max(1, count), {
  dir,
  port,
  host: process.env.LAB_HOST || "127.0.0.1",
  user,
  password,
  seed: process.env.LAB_SEED || "cairn",
  diskSizeBytes: diskMb * 1024 * 1024,
});
for (const lab of labs) console.log(`lab pool "${lab.poolName}" at ${lab.url}  user: ${lab.user}  password: ${lab.password}`);
console.log(`state and disks in ${dir}; Ctrl-C to stop`);

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping the lab`);
  Promise.all(labs.map((lab) => lab.stop())).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error("lab did not stop cleanly:", error);
      process.exit(1);
    },
  );
};
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
