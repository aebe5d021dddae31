/** Runs (executions of jobs, restores and health checks) and their task trees: reading, filtering, cancelling. */
import type { Db } from "../db/prisma.js";
import type { RunKind, RunStatus } from "../db/generated/enums.js";
import type { Run } from "../db/prisma.js";
import { CairnError, ErrorCode, InputError, notFound } from "../errors.js";
import type { EventBus } from "../events/event-bus.js";
import { validUuid } from "../domain/ids.js";
import { withoutNul } from "./input-checks.js";
import { paginate, type PageArgs } from "./pagination.js";
import { TurnShared } from "./turn-shared.js";

export interface RunFilter {
  jobId?: string | null;
  status?: RunStatus[] | null;
  from?: Date | null;
  to?: Date | null;
  vmUuid?: string | null;
  search?: string | null;
}

const NIL_UUID = "00000000-0000-0000-0000-000000000000";
const ACTIVE: RunStatus[] = ["PENDING", "RUNNING"];

/** The words a person types for each kind and status of run (the dashboard's words, and the enum's own). */
const KIND_WORDS: Record<RunKind, string[]> = {
  BACKUP: ["backup"],
  RESTORE: ["restore", "restored"],
  HEALTH_CHECK: ["health check", "healthcheck"],
  VERIFY: ["verify", "verification"],
};
const STATUS_WORDS: Record<RunStatus, string[]> = {
  PENDING: ["pending", "waiting"],
  RUNNING: ["running"],
  SUCCESS: ["success", "succeeded"],
  FAILURE: ["failure", "failed"],
  SKIPPED: ["skipped"],
  INTERRUPTED: ["interrupted"],
  CANCELLED: ["cancelled", "canceled"],
};

/** The enum values with a word that starts with the search (3 letters at least: "res" is a restore, "re" is nothing yet). */
function wordsMatching<T extends string>(words: Record<T, string[]>, search: string): T[] {
  const typed = search
    .toLowerCase()
    .replace(/[\s_-]+/g, " ")
    .trim();
  if (typed.length < 3) return [];
  return (Object.keys(words) as T[]).filter((value) =>
    [...words[value], value.toLowerCase().replace(/_/g, " ")].some((word) => word.startsWith(typed) || word.includes(` ${typed}`)),
  );
}

/**
 * `text` as Prisma's `contains` must be given it to match itself: Prisma passes it into LIKE as it is, so a `_` or `%` in a
 * search would be a wildcard (`x_vhd` finding "x.vhd"); backslash is Postgres's LIKE escape.
 */
const literal = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

export class RunService {
  /** Subscribers that open one run in the same turn share one read of its tree (see treeForSubscriber). */
  private readonly subscriberTrees = new TurnShared(async (runId) => {
    // get() answers NOT_FOUND for an unknown run; the tree itself is read beside it.
    const [, tasks] = await Promise.all([this.get(runId), this.tasks(runId)]);
    return tasks;
  });
  /** Subscribers of one job's runs (or of all, key "") in the same turn share one read (see currentRunsForSubscriber). */
  private readonly subscriberRuns = new TurnShared((jobId) => this.currentRuns(jobId || null));

  constructor(
    private readonly db: Db,
    private readonly events: EventBus,
  ) {}

  async list(filter: RunFilter = {}, page: PageArgs = {}) {
    const where = await this.where(filter);
    // RunCount files the runs of deleted jobs under the nil uuid, which no job has: a filter on it counts the runs.
    const byJobAndStatus = !filter.from && !filter.to && !filter.vmUuid && !filter.search?.trim() && filter.jobId !== NIL_UUID;
    return paginate(this.db.run, where, "createdAt", page, () =>
      byJobAndStatus ? this.countByJobAndStatus(filter) : this.db.run.count({ where }),
    );
  }

  /**
   * How many runs a job (or all jobs) has in these statuses (or any), from RunCount: one row per job and status that triggers
   * on Run keep exact (migration run_rollups), where counting the rows read a million index entries on a long history.
   */
  private async countByJobAndStatus(filter: RunFilter): Promise<number> {
    const rows = await this.db.runCount.aggregate({
      _sum: { runs: true },
      where: {
        ...(filter.jobId ? { jobId: filter.jobId } : {}),
        ...(filter.status?.length ? { status: { in: filter.status } } : {}),
      },
    });
    return Number(rows._sum.runs ?? 0);
  }

  async get(id: string) {
    const run = await this.db.run.findUnique({ where: { id: validUuid(id, "run") } });
    if (!run) throw notFound("run", id);
    return run;
  }

  /** These runs by id, in one query (field resolvers of lists: server/graphql/batch.ts). */
  async getMany(ids: string[]) {
    const rows = ids.length > 0 ? await this.db.run.findMany({ where: { id: { in: ids } } }) : [];
    return new Map(rows.map((row) => [row.id, row]));
  }

  /** The whole task tree of a run as a flat list, parents before children (creation order). */
  tasks(runId: string) {
    return this.db.task.findMany({ where: { runId }, orderBy: { position: "asc" } });
  }

  /**
   * What a new taskUpdated subscriber is sent first: the run's whole task tree (NOT_FOUND for a run that does not exist). The
   * subscribers who ask in the same turn of the event loop share one read, made after that turn: a thousand dashboards opening
   * a run as it starts cost two queries, not two thousand, and each read still begins after its subscriber subscribed to the
   * changes. The rows are shared: read-only.
   */
  async treeForSubscriber(runId: string) {
    return this.subscriberTrees.read(validUuid(runId, "run"));
  }

  /** {@link currentRuns}, shared as {@link treeForSubscriber} is. The rows are shared: read-only. */
  async currentRunsForSubscriber(jobId?: string | null) {
    return this.subscriberRuns.read(jobId ?? "");
  }

  async task(id: string) {
    const task = await this.db.task.findUnique({ where: { id } });
    if (!task) throw notFound("task", id);
    return task;
  }

  /**
   * What a new runUpdated subscriber is sent first: the runs still going (of one job, or all), and for one job its last run
   * too when none is going (a client that subscribes just after runJob may come after that run's end).
   */
  async currentRuns(jobId?: string | null) {
    const active = await this.db.run.findMany({
      where: { status: { in: ACTIVE }, ...(jobId ? { jobId } : {}) },
      orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    });
    if (active.length > 0 || !jobId) return active;
    const last = await this.lastRun(jobId);
    return last ? [last] : [];
  }

  lastRun(jobId: string) {
    return this.db.run.findFirst({ where: { jobId }, orderBy: [{ createdAt: "desc" }, { id: "desc" }] });
  }

  /** The last run of each of these jobs, by job id, in two queries whatever their number (the jobs list asks for every one). */
  async lastRuns(jobIds: string[]) {
    if (jobIds.length === 0) return new Map<string, Run>();
    // One index descent per job ("Run"(jobId, createdAt)), however long each job's history, and one round trip: the rows
    // come back whole (the raw query's columns are Run's fields, typed by their column types as Prisma's own reads are).
    const rows = await this.db.$queryRaw<Run[]>`
      SELECT r.* FROM unnest(${jobIds}::uuid[]) AS j(id)
      CROSS JOIN LATERAL (SELECT * FROM "Run" WHERE "jobId" = j.id ORDER BY "createdAt" DESC, id DESC LIMIT 1) r`;
    return new Map(rows.map((row) => [row.jobId!, row]));
  }

  /**
   * Asks a run to stop. A PENDING run is cancelled at once; a RUNNING one is flagged and its worker stops its transfers, cleans
   * up and ends it CANCELLED. A finished run cannot be cancelled.
   */
  async cancel(id: string) {
    const run = await this.get(id);
    if (!ACTIVE.includes(run.status)) {
      throw new CairnError(ErrorCode.Conflict, `Run ${run.id} has already ended (${run.status}): there is nothing to cancel.`);
    }
    const updated = await this.db.run.updateMany({
      where: { id: run.id, status: "PENDING" },
      data: { status: "CANCELLED", endedAt: new Date(), error: "Cancelled before it started.", cancelRequestedAt: new Date() },
    });
    if (updated.count === 0) {
      await this.db.run.updateMany({ where: { id: run.id, cancelRequestedAt: null }, data: { cancelRequestedAt: new Date() } });
    }
    await this.events.publish({ type: "run", runId: run.id, jobId: run.jobId });
    return this.get(run.id);
  }

  /** The Prisma `where` of a filter, validated (also used by the run history export, server/http/runs-export-route.ts). */
  async where(filter: RunFilter) {
    const conditions: object[] = [];
    if (filter.jobId) conditions.push({ jobId: validUuid(filter.jobId, "job") });
    if (filter.status?.length) conditions.push({ status: { in: filter.status } });
    if (filter.from) conditions.push({ createdAt: { gte: filter.from } });
    if (filter.to) conditions.push({ createdAt: { lt: filter.to } });
    if (filter.from && filter.to && filter.from > filter.to) throw new InputError("filter.to", "must be after filter.from");
    if (filter.vmUuid) conditions.push({ vmUuids: { has: withoutNul(filter.vmUuid, "filter.vmUuid") } });
    const search = withoutNul(filter.search?.trim(), "filter.search");
    if (search) {
      if (search.length > 200) throw new InputError("filter.search", "must be at most 200 characters");
      // Jobs and VMs are found first: that leaves the runs an OR of indexed conditions (job id, kind, status, the trigram
      // indexes of the error and of the tasks' messages, the VM array's GIN index) that Postgres combines as a bitmap, where
      // a join or a subquery in the OR scanned every run. A task's message (a transfer's "NO_SPACE ... ENOSPC", which the
      // run's error only counts) is matched on the run's copy of its tasks' messages (Run.taskMessages, kept by a trigger).
      const contains = { contains: literal(search), mode: "insensitive" } as const;
      const [jobs, vms] = await Promise.all([
        this.db.job.findMany({ where: { name: contains }, select: { id: true } }),
        this.db.vmInventory.findMany({ where: { name: contains }, select: { uuid: true } }),
      ]);
      const kinds = wordsMatching(KIND_WORDS, search);
      const statuses = wordsMatching(STATUS_WORDS, search);
      conditions.push({
        OR: [
          ...(jobs.length ? [{ jobId: { in: jobs.map((j) => j.id) } }] : []),
          { error: contains },
          { taskMessages: contains },
          ...(vms.length ? [{ vmUuids: { hasSome: vms.map((v) => v.uuid) } }] : []),
          ...(kinds.length ? [{ kind: { in: kinds } }] : []),
          ...(statuses.length ? [{ status: { in: statuses } }] : []),
        ],
      });
    }
    return { AND: conditions };
  }
}
