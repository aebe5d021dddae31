import { createServer, request, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** A request as the proxy saw it arrive. */
export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** A whole answer, body included. */
export interface ProxyAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/**
 * Ways to meddle with the traffic, for tests of what a client does about damaged or refused data.
 * With any of them set, bodies are held in memory whole (test sizes only).
 */
export interface ProxyHooks {
  /**
   * Sees a request and its body before it goes on: returns the body to send on (the same or a
   * changed one of the same length), or an answer to give instead of asking the server.
   */
  request?(request: RecordedRequest, body: Buffer): Buffer | ProxyAnswer;
  /** Sees the server's answer before it goes back, and may change it in place. */
  response?(request: RecordedRequest, answer: ProxyAnswer): void;
}

/** An HTTP proxy in front of a test peer that records each request's method, URL and headers. */
export interface RecordingProxy {
  endpoint: string;
  requests: RecordedRequest[];
  stop(): Promise<void>;
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Starts a forwarding proxy on 127.0.0.1 and a free port, in front of `target` (an http:// URL). */
export async function startRecordingProxy(target: string, hooks: ProxyHooks = {}): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const meddles = hooks.request !== undefined || hooks.response !== undefined;
  const server: Server = createServer((incoming, outgoing) => {
    const seen: RecordedRequest = { method: incoming.method ?? "", url: incoming.url ?? "", headers: incoming.headers };
    requests.push(seen);
    const forward = (body?: Buffer) => {
      const forwarded = request(
        { host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers: incoming.headers },
        (answer) => {
          if (hooks.response === undefined) {
            outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(outgoing);
            return;
          }
          void readAll(answer).then((answerBody) => {
            const whole: ProxyAnswer = { status: answer.statusCode ?? 502, headers: { ...answer.headers }, body: answerBody };
            hooks.response?.(seen, whole);
            outgoing.writeHead(whole.status, whole.headers);
            outgoing.end(whole.body);
          });
        },
      );
      forwarded.on("error", () => outgoing.destroy());
      if (body === undefined) incoming.pipe(forwarded);
      else forwarded.end(body);
    };
    if (!meddles) return forward();
    void readAll(incoming).then((body) => {
      const decided = hooks.request === undefined ? body : hooks.request(seen, body);
      if (Buffer.isBuffer(decided)) return forward(decided);
      outgoing.writeHead(decided.status, decided.headers);
      outgoing.end(decided.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
