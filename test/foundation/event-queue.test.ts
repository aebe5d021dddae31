/**
 * What a subscriber of the event bus receives when it falls behind: the events of one run (or one task) waiting for it are
 * merged into the newest, in the place of the first, and what it did not ask for never waits at all. Events carry only
 * ids (subscribers read the state when they handle one), so a merged event loses nothing; without the merge a subscriber
 * with a thousand sockets to write to fell further behind with every progress event of a run.
 *
 * Real Postgres (LISTEN/NOTIFY); no sleeps: a second, eager subscriber says when every event has reached the process (the
 * bus hands each event to all its local subscribers at once, in order).
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CairnEvent, type EventBus, createEventBus } from "../../server/events/event-bus.js";
import { createLogger } from "../../server/log.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { stopAll } from "../support/stop-all.js";

describe("the event bus's queue of a subscriber that falls behind", () => {
  let database: TestDatabase;
  let bus: EventBus;

  beforeAll(async () => {
    database = await createTestDatabase();
    bus = await createEventBus(database.url, createLogger("warn"));
  });
  afterAll(() =>
    stopAll(
      () => bus?.close(),
      () => database?.drop(),
    ),
  );

  /** Publishes `events` in order, then a marker; resolves once an eager subscriber saw the marker (all reached the process). */
  async function publishAll(events: CairnEvent[]): Promise<void> {
    const marker: CairnEvent = { type: "run", runId: randomUUID(), jobId: null };
    const eager = bus.subscribe(undefined, (event) => event.type === "run" && event.runId === marker.runId);
    for (const event of events) await bus.publish(event);
    await bus.publish(marker);
    const seen = await eager.next();
    expect(seen.value).toMatchObject({ runId: marker.runId });
    await eager.return?.();
  }

  async function take(queue: AsyncIterableIterator<CairnEvent>, count: number): Promise<CairnEvent[]> {
    const taken: CairnEvent[] = [];
    for (let i = 0; i < count; i++) taken.push((await queue.next()).value as CairnEvent);
    return taken;
  }

  it("hands over each waiting run and task once, as its newest event, in the place of its first", async () => {
    const runId = randomUUID();
    const [taskA, taskB] = [randomUUID(), randomUUID()];
    const behind = bus.subscribe(undefined, (event) => event.runId === runId);
    await publishAll([
      { type: "task", runId, taskId: taskA, emittedAt: 1 },
      { type: "task", runId, taskId: taskB, emittedAt: 2 },
      { type: "task", runId, taskId: taskA, emittedAt: 3 },
      { type: "run", runId, jobId: null, emittedAt: 4 },
      { type: "task", runId, taskId: taskA, emittedAt: 5 },
      { type: "run", runId, jobId: null, emittedAt: 6 },
    ]);
    const later = { type: "task", runId, taskId: taskB, emittedAt: 7 } as const;
    await publishAll([later]);

    expect(await take(behind, 3)).toEqual([
      { type: "task", runId, taskId: taskA, emittedAt: 5 },
      { type: "task", runId, taskId: taskB, emittedAt: 7 },
      { type: "run", runId, jobId: null, emittedAt: 6 },
    ]);
    // Nothing else waits: the next event published is the next one handed over.
    const next = { type: "task", runId, taskId: taskA, emittedAt: 8 } as const;
    expect(await publishThenTake(behind, next)).toEqual([next]);
    await behind.return?.();
  });

  async function publishThenTake(queue: AsyncIterableIterator<CairnEvent>, event: CairnEvent): Promise<CairnEvent[]> {
    const next = queue.next();
    await bus.publish(event);
    return [(await next).value as CairnEvent];
  }

  it("keeps only what the subscriber asked for, so others' events neither wait nor wake it", async () => {
    const watched = randomUUID();
    const other = randomUUID();
    const queue = bus.subscribe(undefined, (event) => event.type === "run" && event.runId === watched);
    await publishAll([
      { type: "run", runId: other, jobId: null, emittedAt: 1 },
      { type: "task", runId: watched, taskId: randomUUID(), emittedAt: 2 },
      { type: "run", runId: watched, jobId: null, emittedAt: 3 },
      { type: "run", runId: other, jobId: null, emittedAt: 4 },
    ]);
    expect(await take(queue, 1)).toEqual([{ type: "run", runId: watched, jobId: null, emittedAt: 3 }]);
    // The run's next event is the next thing handed over: the other run's events were never queued.
    expect(await publishThenTake(queue, { type: "run", runId: watched, jobId: null, emittedAt: 5 })).toEqual([
      { type: "run", runId: watched, jobId: null, emittedAt: 5 },
    ]);
    await queue.return?.();
  });

  it("never merges a task's events into another task's, or a run's into a task's", async () => {
    const runId = randomUUID();
    const taskId = randomUUID();
    const queue = bus.subscribe(undefined, (event) => event.runId === runId);
    await publishAll([
      { type: "run", runId, jobId: null, emittedAt: 1 },
      { type: "task", runId, taskId, emittedAt: 2 },
      { type: "task", runId, taskId: randomUUID(), emittedAt: 3 },
    ]);
    expect((await take(queue, 3)).map((event) => event.emittedAt)).toEqual([1, 2, 3]);
    await queue.return?.();
  });
});
