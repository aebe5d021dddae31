/**
 * The reporting queries Prisma cannot express (grouping by time buckets), as named functions with bound values.
 *
 * Times: columns are `timestamp(3)` holding UTC (Prisma's convention), instants are bound as ISO strings cast to timestamptz,
 * and a day or a week is the one of the caller's time zone (an IANA name, validated by the service before it gets here):
 * `(column AT TIME ZONE 'UTC') AT TIME ZONE zone` is the wall-clock time there, DST included.
 */
import { Prisma, type RestorePoint as RestorePointModel } from "./generated/client.js";

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
  if (groupBy === "DAY" || groupBy === "WEEK") return bucketStatsSql(from, to, groupBy, timeZone);
  return Prisma.sql`
    SELECT coalesce(r."jobId"::text, 'deleted') AS key, coalesce(max(j.name), 'deleted job') AS label,
           ${figures("r", Prisma.sql`coalesce(sum(r."transferredBytes"), 0)::bigint`)}
    FROM "Run" r LEFT JOIN "Job" j ON j.id = r."jobId"
    WHERE ${inRange}
    GROUP BY 1 ORDER BY 2, 1`;
}

const SLOT_MS = 15 * 60_000;

/**
 * By day or ISO week of `timeZone`, from the rollup RunSlotStats (backup runs summed per 15-minute slot of their creation, kept
 * by triggers on Run: migration run_rollups) rather than from every run: a year is at most 35,040 slots however many runs it
 * holds, where reading a million runs took 2-3 s. Slots of 15 minutes because every offset in use today is a whole number of
 * quarter hours (Kolkata +5:30, Kathmandu +5:45, Eucla +8:45), so each slot lies in one local day of any zone, and one table
 * answers every zone. Rather than a covering index: any index still has every run of the year to read.
 *
 * The answer is the one every run gives, to the digit: counts and sums add up, the average is the sum of durations over the
 * number of runs that have one (what avg() computes), the maximum is the maximum of the slots' maxima. The runs themselves are
 * read where no slot answers: the part of [from, to) before its first whole slot and after its last one (minutes, by the
 * createdAt index), and any slot a bucket boundary cuts (an offset, or a change of it, that is not whole quarter hours: no
 * zone in use today, but old dates of local mean time).
 */
function bucketStatsSql(from: Date, to: Date, groupBy: "DAY" | "WEEK", timeZone: string): Prisma.Sql {
  let firstSlot = new Date(Math.ceil(from.getTime() / SLOT_MS) * SLOT_MS);
  let endSlot = new Date(Math.floor(to.getTime() / SLOT_MS) * SLOT_MS);
  // No whole slot inside: every run is read (the edges would otherwise overlap).
  if (firstSlot >= endSlot) firstSlot = endSlot = to;
  const unit = groupBy === "DAY" ? "day" : "week";
  const format = groupBy === "DAY" ? "YYYY-MM-DD" : 'IYYY-"W"IW';
  const bucket = (column: Prisma.Sql) => Prisma.sql`date_trunc(${unit}, ${local(column, timeZone)})`;
  const slotEnd = Prisma.sql`(s.slot + interval '15 minutes' - interval '1 millisecond')`;
  const duration = Prisma.sql`extract(epoch FROM r."endedAt" - r."startedAt")`;
  return Prisma.sql`
    WITH days AS (
      -- Each UTC day of the slots with the zone's offset at its first instant, and whether that offset holds all day and is a
      -- whole number of quarter hours ("simple"): then every slot of the day lies in one bucket, found by adding the offset
      -- (timestamp arithmetic), where converting each of a year's 35,040 slots through the zone's rules cost microseconds
      -- apiece. A day of a DST change is not simple: its slots are converted one by one.
      SELECT day, offset_start, offset_start = offset_end AND extract(epoch FROM offset_start) % 900 = 0 AS simple
      FROM (
        SELECT d.day, ${local(Prisma.sql`d.day`, timeZone)} - d.day AS offset_start,
               ${local(Prisma.sql`(d.day + interval '1 day' - interval '1 millisecond')`, timeZone)}
                 - (d.day + interval '1 day' - interval '1 millisecond') AS offset_end
        FROM generate_series(date_trunc('day', ${instant(firstSlot)}), ${instant(endSlot)}, interval '1 day') AS d(day)
      ) d
    ),
    -- The same, as arrays indexed by day number: a subscript per slot rather than a join.
    z AS (
      SELECT min(day)::date AS first, array_agg(offset_start ORDER BY day) AS offsets, array_agg(simple ORDER BY day) AS simple
      FROM days
    ),
    simple_slots AS (
      SELECT date_trunc(${unit}, s.slot + z.offsets[s.slot::date - z.first + 1]) AS bucket, s.runs, s.succeeded, s.failed, s.bytes,
             s.ended, s."durationSeconds" AS duration, s."maxDurationSeconds" AS longest
      FROM "RunSlotStats" s, z
      WHERE s.slot >= ${instant(firstSlot)} AND s.slot < ${instant(endSlot)} AND z.simple[s.slot::date - z.first + 1]
    ),
    slots AS (
      SELECT s.*, ${bucket(Prisma.sql`s.slot`)} AS bucket, ${bucket(Prisma.sql`s.slot`)} = ${bucket(slotEnd)} AS whole
      FROM days d JOIN "RunSlotStats" s ON s.slot >= d.day AND s.slot < d.day + interval '1 day'
      WHERE NOT d.simple AND s.slot >= ${instant(firstSlot)} AND s.slot < ${instant(endSlot)}
    ),
    runs AS (
      SELECT r.* FROM "Run" r
      WHERE r.kind = 'BACKUP' AND r."createdAt" >= ${instant(from)} AND r."createdAt" < ${instant(firstSlot)}
      UNION ALL
      SELECT r.* FROM "Run" r
      WHERE r.kind = 'BACKUP' AND r."createdAt" >= ${instant(endSlot)} AND r."createdAt" < ${instant(to)}
      UNION ALL
      SELECT r.* FROM slots s
      JOIN "Run" r ON r.kind = 'BACKUP' AND r."createdAt" >= s.slot AND r."createdAt" < s.slot + interval '15 minutes'
      WHERE NOT s.whole
    ),
    parts AS (
      SELECT * FROM simple_slots
      UNION ALL
      SELECT s.bucket, s.runs, s.succeeded, s.failed, s.bytes, s.ended,
             s."durationSeconds" AS duration, s."maxDurationSeconds" AS longest
      FROM slots s WHERE s.whole
      UNION ALL
      SELECT ${bucket(Prisma.sql`r."createdAt"`)}, 1, (r.status = 'SUCCESS')::int, (r.status IN ('FAILURE', 'INTERRUPTED'))::int,
             r."transferredBytes", (${duration} IS NOT NULL)::int, coalesce(${duration}, 0), ${duration}
      FROM runs r
    )
    SELECT to_char(bucket, ${format}) AS key, to_char(bucket, ${format}) AS label,
           sum(runs)::bigint AS runs, sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed,
           coalesce(sum(bytes), 0)::bigint AS bytes,
           coalesce(sum(duration), 0)::float8 AS duration_seconds,
           (sum(duration) / nullif(sum(ended), 0))::float8 AS avg_duration_seconds,
           max(longest)::float8 AS max_duration_seconds
    FROM parts GROUP BY bucket ORDER BY 1`;
}

/** A known VM as the inventory has it, then the columns of its newest good restore point (all null when it has none). */
export type ProtectionRow = {
  uuid: string;
  vm_name: string;
  vm_pool_id: string;
  vm_tags: string[];
  vm_power_state: string;
} & { [K in keyof RestorePointModel]: RestorePointModel[K] | null };

/** Restore points that count as protection: not known to be broken (health check FAILED, verify DAMAGED). */
const GOOD = Prisma.sql`p."verificationStatus" <> 'FAILED' AND p."integrityStatus" <> 'DAMAGED'`;

/**
 * Each known VM (of one pool, or all) with its newest good restore point taken at or before `at`, whole: vmProtection of a
 * thousand VMs answers from this one query, where reading the VMs and the points again by id took two more of a thousand keys.
 */
export function vmProtectionSql(poolId: string | null, at: Date): Prisma.Sql {
  return Prisma.sql`
    SELECT v.uuid, v.name AS vm_name, v."poolId" AS vm_pool_id, v.tags AS vm_tags, v."powerState" AS vm_power_state, rp.*
    FROM "VmInventory" v
    LEFT JOIN LATERAL (
      SELECT p.* FROM "RestorePoint" p
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
