/** The reporting queries Prisma cannot express (grouping by time buckets), as named functions with bound values. */
import { Prisma } from "./generated/client.js";

export type StatsGroupBy = "DAY" | "WEEK" | "JOB" | "VM";

export interface StatsRow {
  key: string;
  label: string;
  runs: bigint;
  succeeded: bigint;
  failed: bigint;
  bytes: bigint;
  duration_seconds: number;
}

/**
 * Backup runs (or, by VM, per-VM tasks) between `from` and `to`, grouped; days and weeks in UTC. The VM grouping reads
 * the tasks the engine opens per VM (kind `vm`, engine/backup-executor.ts), never their disk children.
 */
export function backupStatsSql(from: Date, to: Date, groupBy: StatsGroupBy): Prisma.Sql {
  if (groupBy === "VM") {
    return Prisma.sql`
      SELECT t."vmUuid" AS key, coalesce(max(v.name), t."vmUuid") AS label,
             count(*) AS runs,
             count(*) FILTER (WHERE t.status = 'SUCCESS') AS succeeded,
             count(*) FILTER (WHERE t.status IN ('FAILURE', 'INTERRUPTED')) AS failed,
             coalesce(sum(t."sizeBytes"), 0)::bigint AS bytes,
             coalesce(sum(extract(epoch FROM t."endedAt" - t."startedAt")), 0)::float8 AS duration_seconds
      FROM "Task" t
      JOIN "Run" r ON r.id = t."runId"
      LEFT JOIN "VmInventory" v ON v.uuid = t."vmUuid"
      WHERE t.kind = 'vm' AND t."vmUuid" IS NOT NULL AND r.kind = 'BACKUP'
        AND r."createdAt" >= ${from} AND r."createdAt" < ${to}
      GROUP BY t."vmUuid" ORDER BY label`;
  }
  const key =
    groupBy === "DAY"
      ? Prisma.sql`to_char(date_trunc('day', r."createdAt"), 'YYYY-MM-DD')`
      : groupBy === "WEEK"
        ? Prisma.sql`to_char(date_trunc('week', r."createdAt"), 'IYYY-"W"IW')`
        : Prisma.sql`coalesce(r."jobId"::text, 'deleted')`;
  const label = groupBy === "JOB" ? Prisma.sql`coalesce(max(j.name), 'deleted job')` : key;
  return Prisma.sql`
    SELECT ${key} AS key, ${label} AS label,
           count(*) AS runs,
           count(*) FILTER (WHERE r.status = 'SUCCESS') AS succeeded,
           count(*) FILTER (WHERE r.status IN ('FAILURE', 'INTERRUPTED')) AS failed,
           coalesce(sum(r."transferredBytes"), 0)::bigint AS bytes,
           coalesce(sum(extract(epoch FROM r."endedAt" - r."startedAt")), 0)::float8 AS duration_seconds
    FROM "Run" r LEFT JOIN "Job" j ON j.id = r."jobId"
    WHERE r.kind = 'BACKUP' AND r."createdAt" >= ${from} AND r."createdAt" < ${to}
    GROUP BY 1 ORDER BY 1`;
}

export interface ProtectionRow {
  uuid: string;
  last_good_id: string | null;
  last_good_at: Date | null;
}

/** Each known VM (of one pool, or all) with its newest restore point that is not known to be broken (health check FAILED, verify DAMAGED). */
export function vmProtectionSql(poolId: string | null): Prisma.Sql {
  return Prisma.sql`
    SELECT v.uuid, rp.id AS last_good_id, rp.timestamp AS last_good_at
    FROM "VmInventory" v
    LEFT JOIN LATERAL (
      SELECT id, timestamp FROM "RestorePoint" p
      WHERE p."vmUuid" = v.uuid AND p."verificationStatus" <> 'FAILED' AND p."integrityStatus" <> 'DAMAGED'
      ORDER BY p.timestamp DESC LIMIT 1
    ) rp ON true
    WHERE ${poolId}::uuid IS NULL OR v."poolId" = ${poolId}::uuid
    ORDER BY v.name`;
}
