/**
 * The GraphiQL page Cairn serves at /graphiql, bundled by scripts/build-graphiql.ts into graphiql/build (no CDN: Cairn's
 * machines may be offline). It signs in as the dashboard does: the dashboard's token from localStorage, sent as a Bearer
 * header over HTTP and as connectionParams over graphql-ws; without a live token it goes to the dashboard's sign-in page,
 * which comes back here.
 */
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { parse } from "graphql";
import { createClient } from "graphql-ws";
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import "graphiql/style.css";

/** The dashboard's key (dashboard/src/lib/stores/session.svelte.ts). */
const TOKEN_KEY = "cairn.token";
const DEFAULT_QUERY = `# Cairn's GraphQL API: the schema is in the Docs panel (the book icon), or in schema.graphql.
# Run with Ctrl-Enter. Subscriptions (runUpdated, taskUpdated) go over the same address as a websocket.
{
  me {
    username
    role
  }
}
`;

function signIn(): void {
  location.replace(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
}

async function start(): Promise<void> {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return signIn();
  const authorization = `Bearer ${token}`;
  // A token that expired or was revoked: dropped (as the dashboard does), or the sign-in page would send us straight back.
  const check = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization },
    body: JSON.stringify({ query: "{ me { username } }" }),
  })
    .then((response) => response.json() as Promise<{ errors?: { extensions?: { code?: string } }[] }>)
    .catch(() => undefined);
  if (check?.errors?.some((error) => error.extensions?.code === "UNAUTHENTICATED")) {
    localStorage.removeItem(TOKEN_KEY);
    return signIn();
  }
  const socketUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/graphql`;
  const send = createGraphiQLFetcher({
    url: "/graphql",
    headers: { authorization },
    wsClient: createClient({ url: socketUrl, connectionParams: { authorization }, lazy: true }),
    enableIncrementalDelivery: false,
  });
  // The toolkit sends a subscription over the websocket only when the document GraphiQL parsed says so, and GraphiQL parses
  // the editor after a debounce: run right after a paste, a subscription went out as an HTTP POST (refused). Parse what is sent.
  const fetcher: typeof send = (params, options) => {
    let documentAST = options?.documentAST;
    try {
      documentAST = parse(params.query);
    } catch {
      // Not a valid document: the server's answer names the syntax error.
    }
    return send(params, { ...options, documentAST });
  };
  const root = document.getElementById("graphiql");
  if (root) createRoot(root).render(createElement(GraphiQL, { fetcher, defaultQuery: DEFAULT_QUERY }));
}

void start();
