/**
 * One process of `npm run bench:subscribers`' subscribers: `count` graphql-ws connections (one socket each), driven by its
 * parent over IPC. Each subscribes to runUpdated(jobId) at once and, on `track`, to taskUpdated(runId) of the measured run;
 * the delay of an event is its arrival here minus its `emittedAt` (the server's clock: same machine).
 *
 * Input: argv[2] = JSON { url, tokens, count, jobId }. Messages to the parent: { type: "connected" }, { type: "warm" } (every
 * subscriber saw an event of the warm-up run), { type: "final" } (every subscriber saw the measured run's final status),
 * and on `finish` { type: "done", delays, runEvents, taskEvents, finalSeen }.
 */
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";

interface Input {
  url: string;
  tokens: string[];
  count: number;
  jobId: string;
}
type Command = { type: "track"; runId: string } | { type: "finish" };

const input = JSON.parse(process.argv[2]) as Input;
const send = (message: object) => process.send!(message);
const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

interface Subscriber {
  client: Client;
  sawWarmUp: boolean;
  sawFinal: boolean;
}

const subscribers: Subscriber[] = [];
let tracked: string | undefined;
const delays: number[] = [];
let runEvents = 0;
let taskEvents = 0;
let warmSent = false;

function record(emittedAt: string | null | undefined) {
  if (!emittedAt) return;
  delays.push(Date.now() - Date.parse(emittedAt));
}

function checkWarm() {
  if (!warmSent && subscribers.length === input.count && subscribers.every((s) => s.sawWarmUp)) {
    warmSent = true;
    send({ type: "warm" });
  }
}

let connected = 0;
for (let i = 0; i < input.count; i++) {
  const subscriber: Subscriber = {
    sawWarmUp: false,
    sawFinal: false,
    client: createClient({
      url: input.url,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${input.tokens[i % input.tokens.length]}` },
      retryAttempts: 0,
      lazy: false,
      on: {
        connected: () => {
          if (++connected === input.count) send({ type: "connected" });
        },
      },
    }),
  };
  subscribers.push(subscriber);
  subscriber.client.subscribe<{ runUpdated: { id: string; status: string; progress: number; emittedAt: string | null } }>(
    {
      query: "subscription($j: ID) { runUpdated(jobId: $j) { id status progress transferredBytes emittedAt } }",
      variables: { j: input.jobId },
    },
    {
      next: ({ data }) => {
        const run = data?.runUpdated;
        if (!run) return;
        if (run.id !== tracked) {
          subscriber.sawWarmUp = true;
          checkWarm();
          return;
        }
        runEvents++;
        record(run.emittedAt);
        if (ENDED.has(run.status) && !subscriber.sawFinal) {
          subscriber.sawFinal = true;
          if (subscribers.every((s) => s.sawFinal)) send({ type: "final" });
        }
      },
      error: (error) => console.error(`runUpdated failed: ${JSON.stringify(error)}`),
      complete: () => undefined,
    },
  );
}

process.on("message", (command: Command) => {
  if (command.type === "track") {
    tracked = command.runId;
    for (const subscriber of subscribers) {
      subscriber.client.subscribe<{ taskUpdated: { emittedAt: string | null } }>(
        {
          query: "subscription($r: ID!) { taskUpdated(runId: $r) { id kind status progress sizeBytes emittedAt } }",
          variables: { r: command.runId },
        },
        {
          next: ({ data }) => {
            if (!data?.taskUpdated) return;
            taskEvents++;
            record(data.taskUpdated.emittedAt);
          },
          error: (error) => console.error(`taskUpdated failed: ${JSON.stringify(error)}`),
          complete: () => undefined,
        },
      );
    }
  } else if (command.type === "finish") {
    const report = { type: "done", delays, runEvents, taskEvents, finalSeen: subscribers.filter((s) => s.sawFinal).length };
    // Exits once the report is handed over: process.send is asynchronous, an exit before would lose it.
    process.send!(report, undefined, {}, () => void Promise.all(subscribers.map((s) => s.client.dispose())).then(() => process.exit(0)));
  }
});
