/**
 * A graphql-ws connection as the graphql-ws tests drive it: opened at once (not lazily, so every operation goes over the
 * same socket), with how it closed, and one operation at a time answered like an HTTP answer.
 */
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";

export interface SocketAnswer<T = any> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; reference?: string; [key: string]: unknown } }[];
}

export interface OpenSocket {
  client: Client;
  /** Resolves once the server acknowledged connection_init. */
  connected: Promise<void>;
  /** How the socket closed (first close only). */
  closed: Promise<{ code: number; reason: string }>;
  /** How many times the client connected: an operation on a re-opened socket would not test the open one. */
  connections(): number;
  dispose(): Promise<void>;
}

export function openSocket(url: string, authorization?: string): OpenSocket {
  let connections = 0;
  let onConnected!: () => void;
  let onClosed!: (event: { code: number; reason: string }) => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (onClosed = resolve));
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: authorization ? { authorization } : {},
    onNonLazyError: () => undefined,
    on: {
      connected: () => {
        connections++;
        onConnected();
      },
      closed: (event) => {
        const { code, reason } = event as { code: number; reason: string };
        onClosed({ code, reason: String(reason) });
      },
    },
  });
  return { client, connected, closed, connections: () => connections, dispose: async () => void (await client.dispose()) };
}

/**
 * Runs one query or mutation over the socket: its result, or the errors the server sent for it. A socket closed before an
 * answer rejects with the close event.
 */
export function runOverSocket<T = any>(
  client: Client,
  query: string,
  variables: Record<string, unknown> = {},
  operationName?: string,
): Promise<SocketAnswer<T>> {
  return new Promise((resolve, reject) => {
    let answer: SocketAnswer<T> | undefined;
    client.subscribe<T>(
      { query, variables, ...(operationName ? { operationName } : {}) },
      {
        next: (result) => (answer = result as SocketAnswer<T>),
        error: (error) => {
          if (Array.isArray(error)) resolve({ errors: error as SocketAnswer["errors"] });
          else reject(error);
        },
        complete: () => (answer ? resolve(answer) : reject(new Error("completed without an answer"))),
      },
    );
  });
}

/**
 * One operation over a new socket, its subscribe message's payload sent as given (JSON text): for variables too deep for
 * JSON.stringify, which a client library would choke on before the server saw them.
 */
export function runRawOverSocket(url: string, authorization: string, payloadJson: string): Promise<SocketAnswer> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, "graphql-transport-ws");
    let answer: SocketAnswer | undefined;
    let settled = false;
    const settle = (value: SocketAnswer) => {
      settled = true;
      socket.close(1000);
      resolve(value);
    };
    socket.on("open", () => socket.send(JSON.stringify({ type: "connection_init", payload: { authorization } })));
    socket.on("message", (data) => {
      const message = JSON.parse(String(data)) as { type: string; payload?: unknown };
      if (message.type === "connection_ack") socket.send(`{"type":"subscribe","id":"1","payload":${payloadJson}}`);
      else if (message.type === "next") answer = message.payload as SocketAnswer;
      else if (message.type === "error") settle({ errors: message.payload as SocketAnswer["errors"] });
      else if (message.type === "complete") settle(answer ?? {});
    });
    socket.on("close", (code, reason) => {
      if (!settled) reject(new Error(`the socket closed (${code} ${String(reason)}) before an answer`));
    });
    socket.on("error", (error) => {
      if (!settled) reject(error);
    });
  });
}
