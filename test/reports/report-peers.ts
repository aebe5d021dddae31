/**
 * The outside world of run reports, over its real protocols: an SMTP server (smtp-server, AUTH required) that keeps every
 * message, and an HTTP server that keeps every webhook request and answers each path with the status the test set.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";

export interface ReceivedMail {
  /** AUTH user and password the client gave. */
  auth: { username: string; password: string };
  from: string;
  to: string[];
  raw: string;
  /** Decoded header value. */
  subject: string;
  /** The text/plain and text/html parts, transfer-decoded. */
  text: string;
  html: string;
}

export interface SmtpPeer {
  port: number;
  mails: ReceivedMail[];
  /** Resolves with the mails once at least `count` arrived whose subject matches. */
  waitFor(match: (mail: ReceivedMail) => boolean, count?: number): Promise<ReceivedMail[]>;
  stop(): Promise<void>;
}

export async function startSmtpPeer(credentials: { username: string; password: string }): Promise<SmtpPeer> {
  const mails: ReceivedMail[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    // Plain TCP with AUTH: no STARTTLS to offer (no certificate), so the client authenticates on the open connection.
    disabledCommands: ["STARTTLS"],
    allowInsecureAuth: true,
    authOptional: false,
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === credentials.username && auth.password === credentials.password)
        callback(null, { user: { username: auth.username, password: auth.password } });
      else callback(new Error("Invalid username or password"));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const user = session.user as unknown as { username: string; password: string };
        mails.push({
          auth: user,
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          raw,
          subject: decodeHeader(header(raw, "subject")),
          text: part(raw, "text/plain"),
          html: part(raw, "text/html"),
        });
        for (const wake of waiters) wake();
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    mails,
    waitFor: (match, count = 1) =>
      waitUntil(waiters, () => {
        const found = mails.filter(match);
        return found.length >= count ? found : undefined;
      }),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface WebhookRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

export interface WebhookPeer {
  url: string;
  requests: WebhookRequest[];
  /** Answers requests to `path` with `status` (default 200). */
  answer(path: string, status: number): void;
  waitFor(path: string, count?: number): Promise<WebhookRequest[]>;
  stop(): Promise<void>;
}

export async function startWebhookPeer(): Promise<WebhookPeer> {
  const requests: WebhookRequest[] = [];
  const statuses = new Map<string, number>();
  const waiters = new Set<() => void>();
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const path = request.url ?? "/";
      requests.push({ path, headers: request.headers, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
      response.statusCode = statuses.get(path) ?? 200;
      response.end();
      for (const wake of waiters) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    answer: (path, status) => void statuses.set(path, status),
    waitFor: (path, count = 1) =>
      waitUntil(waiters, () => {
        const found = requests.filter((r) => r.path === path);
        return found.length >= count ? found : undefined;
      }),
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function waitUntil<T>(waiters: Set<() => void>, check: () => T | undefined): Promise<T> {
  return new Promise((resolve) => {
    const wake = () => {
      const value = check();
      if (value === undefined) return;
      waiters.delete(wake);
      resolve(value);
    };
    waiters.add(wake);
    wake();
  });
}

/** A header's value, unfolded. */
function header(raw: string, name: string): string {
  const head = raw.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, " ");
  return new RegExp(`^${name}:\\s*(.*)$`, "im").exec(head)?.[1] ?? "";
}

/** RFC 2047 encoded words (=?UTF-8?Q?...?= / =?UTF-8?B?...?=). */
function decodeHeader(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, "?==?")
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_m, _charset: string, encoding: string, text: string) =>
      encoding.toUpperCase() === "B"
        ? Buffer.from(text, "base64").toString("utf8")
        : Buffer.from(
            text.replace(/_/g, " ").replace(/=([0-9A-F]{2})/gi, (_x, hex: string) => String.fromCharCode(parseInt(hex, 16))),
            "latin1",
          ).toString("utf8"),
    );
}

/** The body of the first MIME part of `type`, decoded (quoted-printable, base64 or as is). */
function part(raw: string, type: string): string {
  const sections = raw.split(/\r?\n--[^\r\n]+\r?\n/);
  for (const section of sections) {
    const [head, ...rest] = section.split(/\r?\n\r?\n/);
    if (!new RegExp(`content-type:\\s*${type}`, "i").test(head)) continue;
    const body = rest.join("\r\n\r\n");
    const encoding = /content-transfer-encoding:\s*(\S+)/i.exec(head)?.[1]?.toLowerCase();
    if (encoding === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
    if (encoding === "quoted-printable") {
      return Buffer.from(
        body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_x, hex: string) => String.fromCharCode(parseInt(hex, 16))),
        "latin1",
      ).toString("utf8");
    }
    return body;
  }
  return "";
}
