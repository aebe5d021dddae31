/**
 * The attack suites' clients: one GraphQL request over HTTP POST or over a fresh graphql-ws socket (the raw
 * graphql-transport-ws protocol, so that close codes, `error` messages and malformed frames are seen exactly as sent), each
 * answer reduced to the same shape; the check that no answer leaks a stack, a path, SQL or a secret; and a small
 * concurrency limit so that a few hundred requests do not swamp a shared machine.
 */
import WebSocket from "ws";

export type Transport = "HTTP" | "WS";

export interface AnswerError {
  message: string;
  code?: string;
  field?: string;
}

/** What one request got back, whatever the transport. */
export interface Answer {
  transport: Transport;
  /** HTTP status (HTTP only). */
  status?: number;
  /** Everything the server sent, as text: the leak check reads it. */
  text: string;
  data?: Record<string, unknown> | null;
  errors: AnswerError[];
  /** The socket was closed by the server before the operation ended (graphql-ws: 4400 bad message, 4401/4403 refused...). */
  closed?: { code: number; reason: string };
  /** A subscription that was still open, with nothing sent, when the wait ended: it is live. */
  live?: boolean;
}

export interface Operation {
  query: string;
  variables?: Record<string, unknown>;
  /** Variables already as JSON text, for values too deep for JSON.stringify (it overflows the stack at a few thousand levels). */
  variablesJson?: string;
  operationName?: string;
  extensions?: Record<string, unknown>;
}

/** The operation as the JSON text of a request body or a `subscribe` payload. */
export function operationJson(operation: Operation): string {
  const { variablesJson, ...rest } = operation;
  const json = JSON.stringify(rest);
  if (variablesJson === undefined) return json;
  return `${json.slice(0, -1)}${json === "{}" ? "" : ","}"variables":${variablesJson}}`;
}

function errorsOf(value: unknown): AnswerError[] {
  if (!Array.isArray(value)) return [];
  return value.map((error) => {
    const e = (error ?? {}) as { message?: unknown; extensions?: { code?: unknown; field?: unknown } };
    return {
      message: String(e.message ?? ""),
      code: typeof e.extensions?.code === "string" ? e.extensions.code : undefined,
      field: typeof e.extensions?.field === "string" ? e.extensions.field : undefined,
    };
  });
}

const HTTP_TIMEOUT_MS = 60_000;

/** POSTs a body as it is (a string is sent byte for byte: invalid JSON, arrays, huge bodies). */
export async function httpRaw(
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
  token?: string,
): Promise<Answer> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body,
      // A hang is a finding, not a reason to hang the suite.
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    text = await response.text();
  } catch (error) {
    const message = `no answer over HTTP: ${(error as Error).message}`;
    return { transport: "HTTP", text: "", errors: [{ message, code: "TEST_TIMEOUT" }] };
  }
  let parsed: { data?: Record<string, unknown> | null; errors?: unknown } = {};
  try {
    const json = JSON.parse(text) as unknown;
    if (json && typeof json === "object" && !Array.isArray(json)) parsed = json as typeof parsed;
  } catch {
    // Not JSON: the checks read `text` and find no error code, which is a failure they report.
  }
  return { transport: "HTTP", status: response.status, text, data: parsed.data, errors: errorsOf(parsed.errors) };
}

export function httpAsk(url: string, operation: Operation, token?: string): Promise<Answer> {
  return httpRaw(url, operationJson(operation), {}, token);
}

export interface WsOptions {
  /** How long to wait for the end of the operation (a hang is a failure, reported as such). @default 30000 */
  timeoutMs?: number;
  /**
   * A subscription: the answer is its first message (a payload, an error, a completion) or, when nothing came within
   * `liveMs` while `poke` kept publishing events it should see, "live".
   */
  subscription?: { poke?: () => Promise<void>; liveMs?: number };
  /** Frames sent instead of a `subscribe` once the connection is acknowledged (malformed protocol messages). */
  rawFrames?: (string | Buffer)[];
  /** connection_init payload; default: `{ authorization: "Bearer <token>" }` with a token, `{}` without. */
  initPayload?: unknown;
}

/** One operation over a fresh graphql-ws socket: connect, init with the token, subscribe, read until it ends, close. */
export function wsAsk(url: string, operation: Operation | undefined, token?: string, options: WsOptions = {}): Promise<Answer> {
  const wsUrl = `${url.replace(/^http/, "ws")}/graphql`;
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise<Answer>((resolve) => {
    const socket = new WebSocket(wsUrl, "graphql-transport-ws");
    const texts: string[] = [];
    const errors: AnswerError[] = [];
    let data: Record<string, unknown> | null | undefined;
    let done = false;
    let poking: NodeJS.Timeout | undefined;
    const finish = (extra: Partial<Answer> = {}) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poking);
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.terminate();
      resolve({ transport: "WS", text: texts.join("\n"), data, errors, ...extra });
    };
    const timer = setTimeout(
      () => finish({ errors: [...errors, { message: `no answer over graphql-ws within ${timeoutMs} ms`, code: "TEST_TIMEOUT" }] }),
      timeoutMs,
    );
    socket.on("open", () => {
      const payload = options.initPayload ?? (token ? { authorization: `Bearer ${token}` } : {});
      socket.send(JSON.stringify({ type: "connection_init", payload }));
    });
    socket.on("message", (raw) => {
      const text = String(raw);
      texts.push(text);
      let message: { type?: string; id?: string; payload?: unknown };
      try {
        message = JSON.parse(text);
      } catch {
        return finish({ errors: [{ message: `a frame that is not JSON: ${text.slice(0, 200)}`, code: "TEST_BAD_FRAME" }] });
      }
      switch (message.type) {
        case "connection_ack":
          if (options.rawFrames) {
            for (const frame of options.rawFrames) socket.send(frame);
            return;
          }
          socket.send(`{"id":"1","type":"subscribe","payload":${operationJson(operation!)}}`);
          if (options.subscription) {
            const { poke, liveMs = 3_000 } = options.subscription;
            const started = Date.now();
            poking = setInterval(() => {
              if (Date.now() - started > liveMs) return finish({ live: true });
              void poke?.().catch(() => undefined);
            }, 100);
          }
          return;
        case "ping":
          return socket.send(JSON.stringify({ type: "pong" }));
        case "next": {
          const payload = (message.payload ?? {}) as { data?: Record<string, unknown> | null; errors?: unknown };
          data = payload.data;
          errors.push(...errorsOf(payload.errors));
          if (options.subscription) finish();
          return;
        }
        case "error":
          errors.push(...errorsOf(message.payload));
          return finish();
        case "complete":
          return finish();
        default:
          return;
      }
    });
    socket.on("close", (code, reason) => {
      const text = String(reason);
      texts.push(text);
      finish({ closed: { code, reason: text } });
    });
    socket.on("error", (error) => finish({ errors: [{ message: `socket error: ${error.message}`, code: "TEST_SOCKET_ERROR" }] }));
  });
}

/** Runs `task` over `items` with at most `concurrency` at a time, results in order. */
export async function mapLimited<T, R>(
  items: readonly T[],
  concurrency: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/**
 * What must never reach a client. A match is forgiven when the request itself held that text (a message that names the
 * location the caller sent is fine; one that names a server file is not).
 */
const LEAK_PATTERNS: [string, RegExp][] = [
  ["a stack frame", / {4}at /],
  ["a stack frame", /\bat (?:file|node):/],
  ["a source path", /\/work\//],
  ["a source path", /node_modules/],
  ["a source path", /\.(?:ts|js|mjs|cjs):\d+/],
  ["SQL", /\bSELECT /],
  ["SQL", /\bINSERT /],
  ["SQL", /\bUPDATE "/],
  ["SQL", /\bFROM "/],
  ["the ORM's name", /prisma/i],
  ["a stack overflow", /Maximum call stack/i],
];

/**
 * The leaks in an answer (empty when clean): patterns above, and any of the secrets the test knows, verbatim (pass the
 * server's own folders there too: its data dir, the checkout). Paths in general are not a leak: a message may give an
 * example location.
 */
export function leaksIn(answer: Answer, sent: string, secrets: readonly string[]): string[] {
  const found: string[] = [];
  for (const [what, pattern] of LEAK_PATTERNS) {
    const global = new RegExp(pattern.source, `${pattern.flags}g`);
    for (const match of answer.text.matchAll(global)) {
      if (sent.includes(match[0].trim())) continue;
      found.push(`${what}: ${JSON.stringify(context(answer.text, match.index ?? 0))}`);
      break;
    }
  }
  for (const secret of secrets) {
    if (secret && answer.text.includes(secret) && !sent.includes(secret))
      found.push(secret.startsWith("/") ? `a server folder (${secret})` : "a secret the test knows");
  }
  return found;
}

function context(text: string, index: number): string {
  return text.slice(Math.max(0, index - 60), index + 80);
}

/** A short, one-line account of an answer for a failure list. */
export function describeAnswer(answer: Answer): string {
  const parts: string[] = [];
  if (answer.status !== undefined) parts.push(`HTTP ${answer.status}`);
  if (answer.closed) parts.push(`closed ${answer.closed.code} ${JSON.stringify(answer.closed.reason)}`);
  if (answer.live) parts.push("live subscription");
  for (const error of answer.errors.slice(0, 2)) {
    parts.push(`${error.code ?? "<no code>"}${error.field ? `(${error.field})` : ""}: ${JSON.stringify(error.message.slice(0, 160))}`);
  }
  if (answer.errors.length > 2) parts.push(`+${answer.errors.length - 2} more errors`);
  if (answer.errors.length === 0 && answer.data !== undefined) parts.push(`data ${JSON.stringify(answer.data).slice(0, 120)}`);
  if (parts.length === 0) parts.push(`text ${JSON.stringify(answer.text.slice(0, 160))}`);
  return parts.join("; ");
}
