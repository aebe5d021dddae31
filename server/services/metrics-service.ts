/**
 * `/metrics` in Prometheus's text format (version 0.0.4): what an operator alerts on. Figures come from the database
 * (shared by every Cairn process on it, so any process answers for all) and, for the pools, from the rows every process
 * keeps in step with its live connections. Gauges, not counters: runs are counted as stored, and history retention may
 * remove old ones.
 */
import { Prisma } from "../db/generated/client.js";
import type { Db } from "../db/prisma.js";

interface Sample {
  labels?: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: "gauge" | "counter";
  samples: Sample[];
}

interface RunGroupRow {
  kind: string;
  status: string;
  runs: bigint;
  bytes: bigint;
  ended: bigint;
  seconds: number;
}

interface LastRunRow {
  job: string;
  last_success: Date | null;
  last_end: Date | null;
}

export class MetricsService {
  private readonly started = Date.now();

  constructor(private readonly db: Db) {}

  /** The whole exposition, ready to send as `text/plain; version=0.0.4`. */
  async exposition(): Promise<string> {
    const [runGroups, lastRuns, pools, remotes, points] = await Promise.all([
      this.db.$queryRaw<RunGroupRow[]>(Prisma.sql`
        SELECT kind::text, status::text, count(*) AS runs, coalesce(sum("transferredBytes"), 0)::bigint AS bytes,
               count("endedAt") FILTER (WHERE "startedAt" IS NOT NULL) AS ended,
               coalesce(sum(extract(epoch FROM "endedAt" - "startedAt")), 0)::float8 AS seconds
        FROM "Run" GROUP BY 1, 2 ORDER BY 1, 2`),
      this.db.$queryRaw<LastRunRow[]>(Prisma.sql`
        SELECT j.name AS job,
               max(r."endedAt") FILTER (WHERE r.status = 'SUCCESS') AS last_success,
               max(r."endedAt") AS last_end
        FROM "Job" j LEFT JOIN "Run" r ON r."jobId" = j.id
        GROUP BY j.id, j.name ORDER BY j.name`),
      this.db.pool.findMany({ select: { name: true, status: true }, orderBy: { name: "asc" } }),
      this.db.remote.findMany({
        select: { name: true, enabled: true, freeBytes: true, usedBytes: true },
        orderBy: { name: "asc" },
      }),
      this.db.restorePoint.groupBy({ by: ["remoteId"], _count: { _all: true }, _sum: { sizeBytes: true } }),
    ]);
    const remoteNames = new Map(
      (await this.db.remote.findMany({ select: { id: true, name: true } })).map((remote) => [remote.id, remote.name]),
    );

    const families: Family[] = [
      {
        name: "cairn_runs",
        help: "Runs stored, by kind and status (PENDING ones are the queue).",
        type: "gauge",
        samples: runGroups.map((row) => ({ labels: { kind: row.kind, status: row.status }, value: Number(row.runs) })),
      },
      {
        name: "cairn_run_transferred_bytes",
        help: "Bytes the stored runs moved, by kind and status.",
        type: "gauge",
        samples: runGroups.map((row) => ({ labels: { kind: row.kind, status: row.status }, value: Number(row.bytes) })),
      },
      {
        name: "cairn_run_duration_seconds_sum",
        help: "Total duration of the ended runs, by kind and status (divide by cairn_run_duration_seconds_count).",
        type: "gauge",
        samples: runGroups.map((row) => ({ labels: { kind: row.kind, status: row.status }, value: row.seconds })),
      },
      {
        name: "cairn_run_duration_seconds_count",
        help: "Ended runs with a duration, by kind and status.",
        type: "gauge",
        samples: runGroups.map((row) => ({ labels: { kind: row.kind, status: row.status }, value: Number(row.ended) })),
      },
      {
        name: "cairn_job_last_success_timestamp_seconds",
        help: "When each job's last successful run ended (Unix time; 0: never). Alert on time() minus this.",
        type: "gauge",
        samples: lastRuns.map((row) => ({ labels: { job: row.job }, value: seconds(row.last_success) })),
      },
      {
        name: "cairn_job_last_run_end_timestamp_seconds",
        help: "When each job's last run ended, whatever its outcome (Unix time; 0: never).",
        type: "gauge",
        samples: lastRuns.map((row) => ({ labels: { job: row.job }, value: seconds(row.last_end) })),
      },
      {
        name: "cairn_pool_connected",
        help: "1 when the pool's XAPI connection is up (CONNECTED), else 0.",
        type: "gauge",
        samples: pools.map((pool) => ({ labels: { pool: pool.name, status: pool.status }, value: pool.status === "CONNECTED" ? 1 : 0 })),
      },
      {
        name: "cairn_remote_enabled",
        help: "1 when the remote is enabled.",
        type: "gauge",
        samples: remotes.map((remote) => ({ labels: { remote: remote.name }, value: remote.enabled ? 1 : 0 })),
      },
      {
        name: "cairn_remote_free_bytes",
        help: "Free space on the remote's storage when it was last measured (testRemote, runs).",
        type: "gauge",
        samples: remotes
          .filter((remote) => remote.freeBytes !== null)
          .map((remote) => ({ labels: { remote: remote.name }, value: Number(remote.freeBytes) })),
      },
      {
        name: "cairn_remote_used_bytes",
        help: "Used space on the remote's storage when it was last measured.",
        type: "gauge",
        samples: remotes
          .filter((remote) => remote.usedBytes !== null)
          .map((remote) => ({ labels: { remote: remote.name }, value: Number(remote.usedBytes) })),
      },
      {
        name: "cairn_restore_points",
        help: 'Restore points, by remote (replicas on SRs: remote="").',
        type: "gauge",
        samples: points.map((group) => ({
          labels: { remote: group.remoteId ? (remoteNames.get(group.remoteId) ?? group.remoteId) : "" },
          value: group._count._all,
        })),
      },
      {
        name: "cairn_restore_point_bytes",
        help: "Bytes the restore points hold, by remote.",
        type: "gauge",
        samples: points.map((group) => ({
          labels: { remote: group.remoteId ? (remoteNames.get(group.remoteId) ?? group.remoteId) : "" },
          value: Number(group._sum.sizeBytes ?? 0),
        })),
      },
      ...processFamilies(this.started),
    ];
    return render(families);
  }
}

function processFamilies(started: number): Family[] {
  const memory = process.memoryUsage();
  return [
    {
      name: "cairn_process_resident_memory_bytes",
      help: "Resident memory of this Cairn process.",
      type: "gauge",
      samples: [{ value: memory.rss }],
    },
    {
      name: "cairn_process_heap_used_bytes",
      help: "V8 heap in use in this process.",
      type: "gauge",
      samples: [{ value: memory.heapUsed }],
    },
    {
      name: "cairn_process_uptime_seconds",
      help: "Seconds since this process started serving.",
      type: "counter",
      samples: [{ value: Math.round((Date.now() - started) / 1000) }],
    },
  ];
}

function seconds(date: Date | null): number {
  return date === null ? 0 : Math.floor(date.getTime() / 1000);
}

/** A label value as the text format wants it: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function render(families: Family[]): string {
  const lines: string[] = [];
  for (const family of families) {
    lines.push(`# HELP ${family.name} ${family.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      const labels = Object.entries(sample.labels ?? {});
      const labelText = labels.length === 0 ? "" : `{${labels.map(([key, value]) => `${key}="${escapeLabelValue(value)}"`).join(",")}}`;
      lines.push(`${family.name}${labelText} ${Number.isFinite(sample.value) ? sample.value : 0}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
