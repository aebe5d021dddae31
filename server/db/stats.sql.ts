/**
 * The reporting queries Prisma cannot express (grouping by time buckets), as named functions with bound values.
 *
 * Times: columns are `timestamp(3)` holding UTC (Prisma's convention), instants are bound as ISO strings cast to timestamptz,
 * and a day or a week is the one of the caller's time zone (an IANA name, validated by the service before it gets here):
 * `(column AT TIME ZONE 'UTC') AT TIME ZONE zone` is the wall-clock time there, DST included.
 */
import { Prisma } from "./generated/client.js";

export type StatsGroupBy = "DAY" | "WEEK" | "JOB" | "VM" | "REMOTE";
export type TrendInterval = "DAY" | "WEEK";
export type TrendGroupBy = "REMOTE" | "VM";

export interface StatsRow {
  key: string;
  label: string;
  runs: bigint;
  succeeded: bigint;
  failed: bigint;
  bytes: bigint;
  duration_seconds: number;
  avg_duration_seconds: number | null;
  max_duration_seconds: number | null;
}

const instant = (date: Date) => Prisma.sql`(${date.toISOString()}::timestamptz AT TIME ZONE 'UTC')`;
const local = (column: Prisma.Sql, timeZone: string) => Prisma.sql`((${column} AT TIME ZONE 'UTC') AT TIME ZONE ${timeZone})`;

/** The figures of a group of runs (or VM tasks) `x`: counts by outcome, bytes, and durations of those that ended. */
function figures(x: string, bytes: Prisma.Sql): Prisma.Sql {
  const t = Prisma.raw(x);
  return Prisma.sql`
    count(*) AS runs,
    count(*) FILTER (WHERE ${t}.status = 'SUCCESS') AS succeeded,
    count(*) FILTER (WHERE ${t}.status IN ('FAILURE', 'INTERRUPTED')) AS failed,
    ${bytes} AS bytes,
    coalesce(sum(extract(epoch FROM ${t}."endedAt" - ${t}."startedAt")), 0)::float8 AS duration_seconds,
    avg(extract(epoch FROM ${t}."endedAt" - ${t}."startedAt"))::float8 AS avg_duration_seconds,
    max(extract(epoch FROM ${t}."endedAt" - ${t}."startedAt"))::float8 AS max_duration_seconds`;
}

/**
 * Backup runs (or, by VM, per-VM tasks) created in [from, to), grouped. The VM grouping reads the tasks the engine opens
 * per VM (kind `vm`, engine/backup-executor.ts), never their disk children. By REMOTE, a run counts for each remote its job
 * writes to (the job's remotes now) and each remote it left a restore point on (RestorePointHistory, which outlives
 * retention); its bytes there are the sizes of those restore points, its duration the run's.
 */
export function backupStatsSql(from: Date, to: Date, groupBy: StatsGroupBy, timeZone: string): Prisma.Sql {
  const inRange = Prisma.sql`r.kind = 'BACKUP' AND r."createdAt" >= ${instant(from)} AND r."createdAt" < ${instant(to)}`;
  if (groupBy === "VM") {
    return Prisma.sql`
      SELECT t."vmUuid" AS key, coalesce(max(v.name), t."vmUuid") AS label,
             ${figures("t", Prisma.sql`coalesce(sum(t."sizeBytes"), 0)::bigint`)}
      FROM "Task" t
      JOIN "Run" r ON r.id = t."runId"
      LEFT JOIN "VmInventory" v ON v.uuid = t."vmUuid"
      WHERE t.kind = 'vm' AND t."vmUuid" IS NOT NULL AND ${inRange}
      GROUP BY t."vmUuid" ORDER BY label, key`;
  }
  if (groupBy === "REMOTE") {
    return Prisma.sql`
      WITH runs AS (SELECT r.* FROM "Run" r WHERE ${inRange}),
      pairs AS (
        SELECT jr."remoteId", r.id AS "runId" FROM runs r JOIN "JobRemote" jr ON jr."jobId" = r."jobId"
        UNION
        SELECT h."remoteId", h."runId" FROM "RestorePointHistory" h JOIN runs r ON r.id = h."runId"
      )
      SELECT p."remoteId"::text AS key, coalesce(max(rm.name), 'deleted remote') AS label,
             ${figures("r", Prisma.sql`coalesce(sum(w.bytes), 0)::bigint`)}
      FROM pairs p
      JOIN runs r ON r.id = p."runId"
      LEFT JOIN "Remote" rm ON rm.id = p."remoteId"
      LEFT JOIN LATERAL (
        SELECT sum(h."sizeBytes") AS bytes FROM "RestorePointHistory" h WHERE h."runId" = p."runId" AND h."remoteId" = p."remoteId"
      ) w ON true
      GROUP BY p."remoteId" ORDER BY label, key`;
  }
  const at = local(Prisma.sql`r."createdAt"`, timeZone);
  const key =
    groupBy === "DAY"
      ? Prisma.sql`to_char(date_trunc('day', ${at}), 'YYYY-MM-DD')`
      : groupBy === "WEEK"
        ? Prisma.sql`to_char(date_trunc('week', ${at}), 'IYYY-"W"IW')`
        : Prisma.sql`coalesce(r."jobId"::text, 'deleted')`;
  const label = groupBy === "JOB" ? Prisma.sql`coalesce(max(j.name), 'deleted job')` : key;
  return Prisma.sql`
    SELECT ${key} AS key, ${label} AS label,
           ${figures("r", Prisma.sql`coalesce(sum(r."transferredBytes"), 0)::bigint`)}
    FROM "Run" r LEFT JOIN "Job" j ON j.id = r."jobId"
    WHERE ${inRange}
    GROUP BY ${groupBy === "JOB" ? Prisma.sql`1` : Prisma.sql`1, 2`} ORDER BY 2, 1`;
}

export interface ProtectionRow {
  uuid: string;
  last_good_id: string | null;
  last_good_at: Date | null;
}

/** Restore points that count as protection: not known to be broken (health check FAILED, verify DAMAGED). */
const GOOD = Prisma.sql`p."verificationStatus" <> 'FAILED' AND p."integrityStatus" <> 'DAMAGED'`;

/** Each known VM (of one pool, or all) with its newest good restore point taken at or before `at`. */
export function vmProtectionSql(poolId: string | null, at: Date): Prisma.Sql {
  return Prisma.sql`
    SELECT v.uuid, rp.id AS last_good_id, rp.timestamp AS last_good_at
    FROM "VmInventory" v
    LEFT JOIN LATERAL (
      SELECT id, timestamp FROM "RestorePoint" p
      WHERE p."vmUuid" = v.uuid AND ${GOOD} AND p.timestamp <= ${instant(at)}
      ORDER BY p.timestamp DESC LIMIT 1
    ) rp ON true
    WHERE ${poolId}::uuid IS NULL OR v."poolId" = ${poolId}::uuid
    ORDER BY v.name, v.uuid`;
}

export interface RpoPointRow {
  id: string;
  vm_uuid: string;
  timestamp: Date;
  good: boolean;
}

/**
 * The restore points of these VMs taken in [from, to], with whether each is good; plus, per VM, the newest good one before
 * `from` (the protection the period started with), so that the first gap of the period is measured too.
 */
export function rpoPointsSql(vmUuids: string[], from: Date, to: Date): Prisma.Sql {
  return Prisma.sql`
    SELECT p.id, p."vmUuid" AS vm_uuid, p.timestamp, (${GOOD}) AS good
    FROM "RestorePoint" p
    WHERE p."vmUuid" = ANY(${vmUuids}::text[]) AND p.timestamp >= ${instant(from)} AND p.timestamp <= ${instant(to)}
    UNION ALL
    SELECT b.id, b."vmUuid", b.timestamp, true
    FROM unnest(${vmUuids}::text[]) AS u(uuid)
    JOIN LATERAL (
      SELECT p.id, p."vmUuid", p.timestamp FROM "RestorePoint" p
      WHERE p."vmUuid" = u.uuid AND ${GOOD} AND p.timestamp < ${instant(from)}
      ORDER BY p.timestamp DESC LIMIT 1
    ) b ON true
    ORDER BY vm_uuid, timestamp, id`;
}

export interface TrendRow {
  key: string;
  label: string;
  bucket: string;
  start: Date;
  at: Date;
  bytes: bigint;
  restore_points: bigint;
}

/**
 * Bytes held on remotes, per remote or per VM, measured at the end of each day or week of `timeZone` (the last bucket at
 * `to`): the restore points recorded at or before that instant and not removed by then (RestorePointHistory). Every group
 * that held something during [from, to) gets every bucket, zeros included, so that a chart's lines are continuous.
 *
 * One pass over the ledger whatever the number of buckets: each creation (+size) and removal (-size) is placed in the first
 * bucket measured at or after it (width_bucket's binary search over the buckets' instants), and a running sum per group
 * over the buckets gives what was held at each.
 */
export function storageTrendSql(from: Date, to: Date, groupBy: TrendGroupBy, interval: TrendInterval, timeZone: string): Prisma.Sql {
  const unit = interval === "DAY" ? "day" : "week";
  const step = interval === "DAY" ? "1 day" : "7 days";
  const format = interval === "DAY" ? "YYYY-MM-DD" : 'IYYY-"W"IW';
  const groupKey = groupBy === "REMOTE" ? Prisma.sql`h."remoteId"::text` : Prisma.sql`h."vmUuid"`;
  const label =
    groupBy === "REMOTE"
      ? Prisma.sql`coalesce((SELECT name FROM "Remote" WHERE id::text = g.key), 'deleted remote')`
      : Prisma.sql`coalesce((SELECT name FROM "VmInventory" WHERE uuid = g.key), g.name)`;
  const fromLocal = Prisma.sql`(${from.toISOString()}::timestamptz AT TIME ZONE ${timeZone})`;
  const toLocal = Prisma.sql`(${to.toISOString()}::timestamptz AT TIME ZONE ${timeZone})`;
  return Prisma.sql`
    WITH b AS (
      SELECT row_number() OVER (ORDER BY s) AS i, to_char(s, ${format}) AS bucket,
             (s AT TIME ZONE ${timeZone}) AT TIME ZONE 'UTC' AS start,
             least(((s + ${step}::interval) AT TIME ZONE ${timeZone}) AT TIME ZONE 'UTC', ${instant(to)}) AS at
      FROM generate_series(date_trunc(${unit}, ${fromLocal}), ${toLocal} - interval '1 millisecond', ${step}::interval) s
    ),
    ats AS (SELECT array_agg(at ORDER BY i) AS list FROM b),
    g AS (
      SELECT ${groupKey} AS key, max(h."vmName") AS name FROM "RestorePointHistory" h
      WHERE h."createdAt" < ${instant(to)} AND (h."removedAt" IS NULL OR h."removedAt" > ${instant(from)})
      GROUP BY 1
    ),
    ev AS (
      SELECT ${groupKey} AS key, h."createdAt" AS t, h."sizeBytes" AS d, 1 AS n FROM "RestorePointHistory" h
      WHERE h."createdAt" <= ${instant(to)}
      UNION ALL
      SELECT ${groupKey}, h."removedAt", -h."sizeBytes", -1 FROM "RestorePointHistory" h
      WHERE h."removedAt" <= ${instant(to)}
    ),
    placed AS (
      SELECT ev.key, width_bucket(ev.t - interval '1 millisecond', ats.list) + 1 AS i, sum(ev.d) AS d, sum(ev.n) AS n
      FROM ev, ats GROUP BY 1, 2
    )
    SELECT g.key, ${label} AS label, b.bucket, b.start, b.at,
           (sum(coalesce(p.d, 0)) OVER w)::bigint AS bytes, (sum(coalesce(p.n, 0)) OVER w)::bigint AS restore_points
    FROM g CROSS JOIN b
    LEFT JOIN placed p ON p.key = g.key AND p.i = b.i
    WINDOW w AS (PARTITION BY g.key ORDER BY b.i)
    ORDER BY label, g.key, b.i`;
}
