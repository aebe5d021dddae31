// Runs in the "server" vitest project (node): the dashboard project resolves `ws` to its browser stub, and
// a real graphql-ws server is the honest peer of the dashboard's subscription client.
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { parse } from "@0no-co/graphql.web";
import type { TadaDocumentNode } from "gql.tada";
import { buildSchema } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocket, WebSocketServer } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSubscriptionClient, subscribe, subscriptionUrl } from "../../../dashboard/src/lib/api/subscriptions.js";

const schema = buildSchema(`
  type Query { ok: Boolean }
  type Subscription { greetings(to: String!): String! }
`);
const rootValue = {
  greetings: async function* ({ to }: { to: string }) {
    for (const hello of ["Hello", "Bonjour"]) yield { greetings: `${hello} ${to}` };
  },
};
const Greetings = parse("subscription Greetings($to: String!) { greetings(to: $to) }") as unknown as TadaDocumentNode<
  { greetings: string },
  { to: string }
>;

describe("subscriptionUrl", () => {
  it("uses ws: for http: and wss: for https:, on the page's host and the GraphQL path", () => {
    expect(subscriptionUrl({ protocol: "http:", host: "127.0.0.1:8080" })).toBe("ws://127.0.0.1:8080/graphql");
    expect(subscriptionUrl({ protocol: "https:", host: "cairn.example" })).toBe("wss://cairn.example/graphql");
  });
});

describe("subscribe", () => {
  let server: WebSocketServer;
  let url: string;

  beforeAll(async () => {
    server = new WebSocketServer({ port: 0, host: "127.0.0.1", path: "/graphql" });
    await once(server, "listening");
    useServer(
      {
        schema,
        roots: { subscription: rootValue },
        onConnect: (ctx) => ctx.connectionParams?.authorization === "Bearer t0ken",
      },
      server,
    );
    url = subscriptionUrl({ protocol: "http:", host: `127.0.0.1:${(server.address() as AddressInfo).port}` });
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("sends the bearer token in connectionParams and delivers each event's data, then completes", async () => {
    const client = createSubscriptionClient({ url, token: () => "t0ken", webSocketImpl: WebSocket });
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      subscribe(
        client,
        Greetings,
        { to: "admin" },
        {
          next: (data) => received.push(data.greetings),
          error: reject,
          complete: resolve,
        },
      );
    });
    expect(received).toEqual(["Hello admin", "Bonjour admin"]);
    await client.dispose();
  });

  it("fails at once when the server refuses the token, and reports it so the app can sign out", async () => {
    let refused = 0;
    const client = createSubscriptionClient({
      url,
      token: () => "revoked",
      webSocketImpl: WebSocket,
      onUnauthenticated: () => refused++,
    });
    const error = await new Promise<unknown>((resolve) => {
      subscribe(client, Greetings, { to: "admin" }, { next: () => {}, error: resolve, complete: () => resolve(null) });
    });
    expect(error).toMatchObject({ code: 4403 }); // graphql-ws's CloseCode.Forbidden
    expect(refused).toBe(1);
    await client.dispose();
  });
});
