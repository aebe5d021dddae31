import {
  Arg,
  Authorized,
  Ctx,
  FieldResolver,
  ID,
  Int,
  Mutation,
  Query,
  Resolver,
  Root,
  Subscription,
  type SubscribeResolverData,
} from "type-graphql";
import type { CairnEvent } from "../../events/event-bus.js";
import { requireRole } from "../../domain/principal.js";
import { mapConnection } from "../../services/pagination.js";
import { JOB_VIEWS_BY_ID, JOBS_WITH_SCHEDULES_BY_ID, batched } from "../batch.js";
import type { GraphQLContext } from "../context.js";
import { toRestorePoint, toRun, toSchedule, toTask } from "../mappers.js";
import { Role } from "../types/enums.js";
import { Job, Schedule } from "../types/job.js";
import { Run, RunConnection, RunFilter, RunRestore, Task } from "../types/run.js";

@Resolver(() => Run)
export class RunResolver {
  @Authorized(Role.VIEWER)
  @Query(() => RunConnection, { description: "Runs, newest first." })
  async runs(
    @Arg("filter", () => RunFilter, { nullable: true }) filter: RunFilter | null,
    @Arg("first", () => Int, { nullable: true }) first: number | null,
    @Arg("after", () => String, { nullable: true }) after: string | null,
    @Ctx() { services }: GraphQLContext,
  ) {
    // A filter on a job that does not exist is NOT_FOUND, as the job itself is, rather than an empty page.
    if (filter?.jobId) await services.jobs.get(filter.jobId);
    const page = await services.runs.list(filter ?? {}, { first, after });
    return mapConnection(page, toRun);
  }

  @Authorized(Role.VIEWER)
  @Query(() => Run, { nullable: true })
  async run(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<Run> {
    return toRun(await services.runs.get(id));
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, { description: "Stops a run: transfers stop, partial files and the run's snapshots are removed." })
  async cancelRun(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<Run> {
    return toRun(await services.runs.cancel(id));
  }

  @FieldResolver(() => Job, { nullable: true })
  async job(@Root() run: Run, @Ctx() context: GraphQLContext): Promise<Job | null> {
    if (!run.jobId) return null;
    // Batched: a page of runs takes the jobs of all its runs from the jobs list once, not three queries per run.
    return (await batched(context, JOB_VIEWS_BY_ID, run.jobId)) ?? null;
  }

  @FieldResolver(() => Schedule, { nullable: true })
  async schedule(@Root() run: Run, @Ctx() context: GraphQLContext): Promise<Schedule | null> {
    if (!run.jobId || !run.scheduleId) return null;
    const job = await batched(context, JOBS_WITH_SCHEDULES_BY_ID, run.jobId);
    const schedule = job?.schedules.find((s) => s.id === run.scheduleId);
    return schedule ? toSchedule(schedule) : null;
  }

  @FieldResolver(() => RunRestore, { nullable: true, description: "For a RESTORE run: what it restores and where to (null otherwise)." })
  async restore(@Root() run: Run, @Ctx() { services }: GraphQLContext): Promise<RunRestore | null> {
    if (run.kind !== "RESTORE") return null;
    const params = (run.params ?? {}) as { restorePointId?: unknown; poolId?: unknown; srUuid?: unknown; name?: unknown };
    if (typeof params.restorePointId !== "string" || typeof params.poolId !== "string" || typeof params.srUuid !== "string") return null;
    const { restorePointId, poolId, srUuid } = params;
    const [point, pool, tasks] = await Promise.all([
      services.restorePoints.get(restorePointId).catch(() => null),
      services.pools.get(poolId).catch(() => null),
      services.runs.tasks(run.id),
    ]);
    // The restore task's result names the VM it made (server/engine/restore/restore-executor.ts).
    const made = (tasks.find((task) => task.kind === "restore")?.result ?? {}) as { vmUuid?: unknown; name?: unknown };
    return {
      restorePoint: point ? toRestorePoint(point) : null,
      restorePointId,
      poolId,
      poolName: pool?.name ?? null,
      srUuid,
      srName: services.pools.srs(poolId).find((sr) => sr.uuid === srUuid)?.name ?? null,
      vmUuid: typeof made.vmUuid === "string" && made.vmUuid !== "" ? made.vmUuid : null,
      vmName: typeof made.name === "string" ? made.name : typeof params.name === "string" ? params.name : null,
    };
  }

  @FieldResolver(() => [Task], { description: "The whole task tree, flat, parents before children." })
  async tasks(@Root() run: Run, @Ctx() { services }: GraphQLContext): Promise<Task[]> {
    return (await services.runs.tasks(run.id)).map(toTask);
  }

  @Subscription(() => Run, {
    description: "Every status or progress change of a run (of one job, or all runs).",
    subscribe: async ({ args, context }: SubscribeResolverData<unknown, { jobId?: string | null }, GraphQLContext>) => {
      requireRole(context.principal, Role.VIEWER);
      // Checked before subscribing: a typo'd or unknown id is NOT_FOUND now, not a subscription that never says anything.
      if (args.jobId) await context.services.jobs.get(args.jobId);
      // Subscribed before the current state is read: a change in between comes after it, never lost.
      const live = context.services.events.subscribe(undefined, (e) => e.type === "run" && (!args.jobId || e.jobId === args.jobId));
      const current = await context.services.runs.currentRunsForSubscriber(args.jobId).catch(async (error: unknown) => {
        await live.return?.();
        throw error;
      });
      return startingWith(
        sharedFirstEvents(current, (row) => known({ type: "run", runId: row.id, jobId: row.jobId }, { ...toRun(row), emittedAt: null })),
        live,
      );
    },
  })
  async runUpdated(
    @Root() event: CairnEvent,
    @Arg("jobId", () => ID, { nullable: true }) _jobId: string | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<Run> {
    // Once per event for all its subscribers of this process, not once per subscriber: 1,000 open dashboards cost one read.
    return onePerEvent(event, async () => ({ ...toRun(await services.runs.get(event.runId)), emittedAt: emittedAtOf(event) }));
  }

  @Subscription(() => Task, {
    description: "Every change of a task of one run: start, progress, end.",
    subscribe: async ({ args, context }: SubscribeResolverData<unknown, { runId: string }, GraphQLContext>) => {
      requireRole(context.principal, Role.VIEWER);
      // The run's whole task tree first (a page opened mid-run is complete), then every change; subscribed before the tree is
      // read, so a change in between comes after it, never lost. An unknown run is NOT_FOUND (and the subscription ended).
      const live = context.services.events.subscribe(undefined, (e) => e.type === "task" && e.runId === args.runId);
      const tasks = await context.services.runs.treeForSubscriber(args.runId).catch(async (error: unknown) => {
        await live.return?.();
        throw error;
      });
      return startingWith(
        sharedFirstEvents(tasks, (row) => known({ type: "task", runId: args.runId, taskId: row.id }, { ...toTask(row), emittedAt: null })),
        live,
      );
    },
  })
  async taskUpdated(@Root() event: CairnEvent, @Arg("runId", () => ID) _runId: string, @Ctx() { services }: GraphQLContext): Promise<Task> {
    // Once per event for all its subscribers of this process (see runUpdated).
    return onePerEvent(event, async () => ({
      ...toTask(await services.runs.task((event as Extract<CairnEvent, { type: "task" }>).taskId)),
      emittedAt: emittedAtOf(event),
    }));
  }
}

/**
 * What an event resolves to, read once: the event bus hands the same event object to every subscriber of this process, so
 * the first subscriber's read is shared by the others (and forgotten with the event). The object is shared: read-only.
 */
const perEvent = new WeakMap<CairnEvent, Promise<unknown>>();
function onePerEvent<T>(event: CairnEvent, read: () => Promise<T>): Promise<T> {
  let value = perEvent.get(event) as Promise<T> | undefined;
  if (!value) {
    value = read();
    perEvent.set(event, value);
  }
  return value;
}

/** An event made for one subscriber whose value was read already (the current state sent first). */
function known<T>(event: CairnEvent, value: T): CairnEvent {
  perEvent.set(event, Promise.resolve(value));
  return event;
}

/**
 * The first events made from rows that subscribers share (one read for all who asked in one turn): made once, so that each
 * event is executed once for all of them (shared-subscription.ts), not once per subscriber.
 */
const firstEvents = new WeakMap<readonly object[], CairnEvent[]>();
function sharedFirstEvents<Row extends object>(rows: readonly Row[], toEvent: (row: Row) => CairnEvent): CairnEvent[] {
  let events = firstEvents.get(rows);
  if (!events) {
    events = rows.map(toEvent);
    firstEvents.set(rows, events);
  }
  return events;
}

/** `first`, then what `rest` yields; leaving ends `rest`. */
function startingWith(first: CairnEvent[], rest: AsyncIterableIterator<CairnEvent>): AsyncIterableIterator<CairnEvent> {
  const queue = [...first];
  return {
    next() {
      const value = queue.shift();
      return value !== undefined ? Promise.resolve({ value, done: false }) : rest.next();
    },
    return: () => {
      queue.length = 0;
      return rest.return?.() ?? Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

const emittedAtOf = (event: CairnEvent) => (event.emittedAt === undefined ? null : new Date(event.emittedAt));
