/**
 * The load generator of `npm run bench:api`, run as its own process (so that its work does not count as the server's, nor
 * the server's as its): `clients` loops over as many keep-alive connections, each sending the next request of `queries`
 * (round robin) as soon as the previous one answered, for `seconds`. Every answer is checked (HTTP 200, no `errors`).
 *
 * Input: one JSON object in argv[2] ({ url, token, clients, seconds, warmupSeconds, queries: [{ name, query, variables? }] }).
 * Output: one JSON line on stdout ({ requests, seconds, rps, p50Ms, p95Ms, p99Ms, maxMs, errors, firstError?, perQuery }).
 */
import { Pool } from "undici";

interface Input {
  url: string;
  token: string;
  clients: number;
  seconds: number;
  warmupSeconds: number;
  queries: { name: string; query: string; variables?: Record<string, unknown> }[];
}

const input = JSON.parse(process.argv[2]) as Input;
const origin = new URL(input.url).origin;
const pool = new Pool(origin, { connections: input.clients, pipelining: 1, keepAliveTimeout: 60_000 });
const bodies = input.queries.map((q) => JSON.stringify({ query: q.query, variables: q.variables }));
const headers = { "content-type": "application/json", authorization: `Bearer ${input.token}` };

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function phase(seconds: number, record: boolean) {
  const latencies: number[] = [];
  const perQuery = input.queries.map(() => [] as number[]);
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const loop = async () => {
    while (performance.now() < deadline) {
      const index = next++ % bodies.length;
      const begin = performance.now();
      try {
        const response = await pool.request({ path: "/graphql", method: "POST", headers, body: bodies[index] });
        const text = await response.body.text();
        const ms = performance.now() - begin;
        const body = JSON.parse(text) as { errors?: { message: string }[] };
        if (response.statusCode !== 200 || body.errors?.length) {
          errors++;
          firstError ??= `${input.queries[index].name}: HTTP ${response.statusCode} ${text.slice(0, 300)}`;
        } else if (record) {
          latencies.push(ms);
          perQuery[index].push(ms);
        }
      } catch (error) {
        errors++;
        firstError ??= `${input.queries[index].name}: ${(error as Error).message}`;
      }
    }
  };
  await Promise.all(Array.from({ length: input.clients }, loop));
  const elapsed = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  const stats = (values: Float64Array) => ({
    p50Ms: round(percentile(values, 50)),
    p95Ms: round(percentile(values, 95)),
    p99Ms: round(percentile(values, 99)),
  });
  return {
    requests: latencies.length,
    seconds: round(elapsed, 2),
    rps: round(latencies.length / elapsed),
    ...stats(sorted),
    maxMs: round(sorted.at(-1) ?? 0),
    errors,
    ...(firstError ? { firstError } : {}),
    perQuery: Object.fromEntries(
      input.queries.map((q, i) => [q.name, { requests: perQuery[i].length, ...stats(Float64Array.from(perQuery[i]).sort()) }]),
    ),
  };
}

function round(value: number, digits = 1): number {
  return Math.round(value * 10 ** digits) / 10 ** digits;
}

if (input.warmupSeconds > 0) await phase(input.warmupSeconds, false);
const result = await phase(input.seconds, true);
await pool.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
