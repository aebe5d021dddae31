/**
 * Questions asked of the whole history: backup totals per day / week / job / VM / remote, how protected each VM is, the RPO
 * each VM achieved against its schedules, and the bytes held on remotes over time.
 */
import { Prisma, type RestorePoint as RestorePointModel } from "../db/generated/client.js";
import type { Db } from "../db/prisma.js";
import {
  backupStatsSql,
  rpoPointsSql,
  storageTrendSql,
  vmProtectionSql,
  type ProtectionRow,
  type RpoPointRow,
  type StatsGroupBy,
  type StatsRow,
  type TrendGroupBy,
  type TrendInterval,
  type TrendRow,
} from "../db/stats.sql.js";
import { InputError, notFound } from "../errors.js";
import { validUuid } from "../domain/ids.js";
import { isTimeZone } from "../domain/schedule.js";
import type { Selection } from "../domain/job-settings.js";
import { resolveSelection } from "../engine/backup/vm-selection.js";
import { integerInRange } from "./input-checks.js";
import { RunsExport } from "./runs-export.js";
import { Cron } from "croner";

const MAX_RANGE_DAYS = 3660;
/** Most buckets one storage trend answers per group (a year and a month of days). */
const MAX_TREND_BUCKETS = 400;
/** Fire times sampled per schedule to find its longest interval (a weekday-only cron shows its weekend within 16). */
const SAMPLED_FIRES = 16;
/** A restore point is stamped when its snapshot was taken, a few minutes after the schedule fired: that jitter is no miss. */
const MAX_GRACE_SECONDS = 3600;

export interface RpoFigures {
  vmUuid: string;
  /** The tightest interval of the enabled schedules of the enabled jobs that select the VM (null: none does). */
  targetSeconds: number | null;
  graceSeconds: number;
  /** The longest gap between consecutive good restore points over the period, the current gap included (null: none). */
  maxGapSeconds: number | null;
  /** From the newest good restore point to the end of the period (null: none). */
  currentGapSeconds: number | null;
  goodRestorePoints: number;
  restorePoints: number;
  met: boolean;
  /** The restore points of the period, oldest first, each with the gap since the previous good one. */
  points: { id: string; timestamp: Date; good: boolean; gapSeconds: number | null }[];
}

export class StatsService {
  /** exportRuns and its download route. */
  readonly runsExport: RunsExport;

  constructor(
    private readonly db: Db,
    private readonly clock: { now(): Date } = { now: () => new Date() },
  ) {
    this.runsExport = new RunsExport(db);
  }

  async backupStats(from: Date, to: Date, groupBy: StatsGroupBy, timeZone?: string | null) {
    checkRange(from, to, MAX_RANGE_DAYS);
    const zone = validTimeZone(timeZone);
    const rows = await this.db.$queryRaw<StatsRow[]>(backupStatsSql(from, to, groupBy, zone));
    return rows.map((row) => {
      const runs = Number(row.runs);
      const succeeded = Number(row.succeeded);
      const failed = Number(row.failed);
      return {
        key: row.key,
        label: row.label,
        runs,
        succeeded,
        failed,
        successRate: succeeded + failed > 0 ? Math.round((succeeded / (succeeded + failed)) * 10_000) / 10_000 : null,
        bytes: Number(row.bytes),
        durationSeconds: Math.round(Number(row.duration_seconds)),
        avgDurationSeconds: row.avg_duration_seconds === null ? null : Math.round(Number(row.avg_duration_seconds) * 10) / 10,
        maxDurationSeconds: row.max_duration_seconds === null ? null : Math.round(Number(row.max_duration_seconds)),
      };
    });
  }

  async vmProtection(poolId: string | null | undefined, olderThanHours: number | null | undefined, at?: Date | null) {
    const hours = integerInRange(olderThanHours ?? 24, "olderThanHours", 1, 24 * 3660);
    const when = at ?? this.clock.now();
    const rows = await this.db.$queryRaw<ProtectionRow[]>(vmProtectionSql(poolId ? validUuid(poolId, "pool") : null, when));
    return rows.map(({ uuid, vm_name, vm_pool_id, vm_tags, vm_power_state, ...point }) => {
      const lastGood = point.id === null ? null : (point as RestorePointModel);
      const ageHours = lastGood ? (when.getTime() - lastGood.timestamp.getTime()) / 3600_000 : null;
      return {
        vmUuid: uuid,
        /** The VM as the inventory last saw it (the resolver prefers what a connected pool shows now). */
        inventory: { uuid, name: vm_name, poolId: vm_pool_id, tags: vm_tags, powerState: vm_power_state },
        lastGoodRestorePointId: lastGood?.id ?? null,
        lastGoodRestorePoint: lastGood,
        ageHours: ageHours === null ? null : Math.round(ageHours * 10) / 10,
        protected: ageHours !== null && ageHours <= hours,
      };
    });
  }

  /** The inventory records of these VMs (for VMs of disconnected pools). */
  async inventory(uuids: string[]) {
    const rows = await this.db.vmInventory.findMany({ where: { uuid: { in: uuids } } });
    return new Map(rows.map((row) => [row.uuid, row]));
  }

  /**
   * The newest (or oldest) restore point of each of these VMs, by VM uuid, in two queries whatever their number: one index
   * descent per VM ("RestorePoint"(vmUuid, timestamp)). For Vm.lastRestorePoint and Vm.protectedSince over a list of VMs.
   */
  async edgeRestorePoints(vmUuids: string[], which: "newest" | "oldest") {
    const order = which === "newest" ? Prisma.sql`timestamp DESC, id DESC` : Prisma.sql`timestamp ASC, id ASC`;
    const found =
      vmUuids.length > 0
        ? await this.db.$queryRaw<{ id: string }[]>`
            SELECT p.id FROM unnest(${vmUuids}::text[]) AS v(uuid)
            CROSS JOIN LATERAL (SELECT id FROM "RestorePoint" WHERE "vmUuid" = v.uuid ORDER BY ${order} LIMIT 1) p`
        : [];
    const rows = found.length > 0 ? await this.db.restorePoint.findMany({ where: { id: { in: found.map((row) => row.id) } } }) : [];
    return new Map(rows.map((row) => [row.vmUuid, row]));
  }

  /** The RPO of one known VM over [from, to] (defaults: the 30 days up to now). */
  async vmRpo(vmUuid: string, from?: Date | null, to?: Date | null): Promise<RpoFigures> {
    const uuid = validVmUuid(vmUuid);
    const known = await this.db.vmInventory.findUnique({ where: { uuid } });
    if (!known) throw notFound("VM", vmUuid);
    return (await this.rpo([known], from, to))[0];
  }

  /** The RPO of every known VM (of one pool, or all), in name order. */
  async rpoReport(poolId: string | null | undefined, from?: Date | null, to?: Date | null): Promise<RpoFigures[]> {
    const vms = await this.db.vmInventory.findMany({
      where: poolId ? { poolId: validUuid(poolId, "pool") } : {},
      orderBy: [{ name: "asc" }, { uuid: "asc" }],
    });
    return this.rpo(vms, from, to);
  }

  private async rpo(
    vms: { uuid: string; name: string; poolId: string; tags: string[]; powerState: string }[],
    fromArg: Date | null | undefined,
    toArg: Date | null | undefined,
  ): Promise<RpoFigures[]> {
    const now = this.clock.now();
    const to = toArg && toArg < now ? toArg : now;
    const from = fromArg ?? new Date(to.getTime() - 30 * 86400_000);
    checkRange(from, to, MAX_RANGE_DAYS);
    if (vms.length === 0) return [];
    const [points, targets] = await Promise.all([
      this.db.$queryRaw<RpoPointRow[]>(
        rpoPointsSql(
          vms.map((vm) => vm.uuid),
          from,
          to,
        ),
      ),
      this.targets(vms, to),
    ]);
    const byVm = new Map<string, RpoPointRow[]>();
    for (const point of points) {
      const list = byVm.get(point.vm_uuid) ?? [];
      list.push(point);
      byVm.set(point.vm_uuid, list);
    }
    return vms.map((vm) => {
      const rows = byVm.get(vm.uuid) ?? [];
      const target = targets.get(vm.uuid) ?? null;
      return rpoOf(vm.uuid, rows, from, to, target);
    });
  }

  /**
   * Each VM's RPO target: the shortest of the longest intervals between consecutive fire times of the enabled schedules of
   * the enabled jobs selecting it now (VERIFY jobs make no restore point and do not count, nor METADATA jobs: they select pools).
   */
  private async targets(vms: { uuid: string; name: string; poolId: string; tags: string[]; powerState: string }[], at: Date) {
    const jobs = await this.db.job.findMany({
      where: { enabled: true, mode: { notIn: ["VERIFY", "METADATA"] }, schedules: { some: { enabled: true } } },
      select: { selection: true, schedules: { where: { enabled: true }, select: { cron: true, timezone: true } } },
    });
    const targets = new Map<string, number>();
    for (const job of jobs) {
      const interval = Math.min(...job.schedules.map((s) => cronInterval(s.cron, s.timezone, at) ?? Number.POSITIVE_INFINITY));
      if (!Number.isFinite(interval)) continue;
      const selected = resolveSelection(selectionOf(job.selection), vms).vms;
      for (const vm of selected) targets.set(vm.uuid, Math.min(targets.get(vm.uuid) ?? Number.POSITIVE_INFINITY, interval));
    }
    return targets;
  }

  /** Bytes held on remotes per remote or per VM, at the end of each day or week of [from, to) in `timeZone`. */
  async storageTrend(from: Date, to: Date, groupBy: TrendGroupBy, interval: TrendInterval, timeZone?: string | null) {
    checkRange(from, to, MAX_RANGE_DAYS);
    const zone = validTimeZone(timeZone);
    const days = (to.getTime() - from.getTime()) / 86400_000;
    const buckets = interval === "DAY" ? days : days / 7;
    if (buckets > MAX_TREND_BUCKETS) {
      throw new InputError(
        "to",
        `the range holds ${Math.ceil(buckets)} ${interval === "DAY" ? "days" : "weeks"}: at most ${MAX_TREND_BUCKETS}`,
      );
    }
    const rows = await this.db.$queryRaw<TrendRow[]>(storageTrendSql(from, to, groupBy, interval, zone));
    const series: {
      key: string;
      label: string;
      points: { bucket: string; start: Date; at: Date; bytes: number; restorePoints: number }[];
    }[] = [];
    for (const row of rows) {
      let last = series.at(-1);
      if (!last || last.key !== row.key) {
        last = { key: row.key, label: row.label, points: [] };
        series.push(last);
      }
      last.points.push({
        bucket: row.bucket,
        start: row.start,
        at: row.at,
        bytes: Number(row.bytes),
        restorePoints: Number(row.restore_points),
      });
    }
    return series;
  }
}

function checkRange(from: Date, to: Date, maxDays: number): void {
  if (!(to > from)) throw new InputError("to", "must be after from");
  if (to.getTime() - from.getTime() > maxDays * 86400_000) throw new InputError("to", `the range must be at most ${maxDays} days`);
}

/** An IANA time zone name (Europe/Paris, UTC); offsets such as +01:00 are refused, as Postgres reads them with the sign reversed. */
function validTimeZone(zone: string | null | undefined): string {
  if (zone === null || zone === undefined) return "UTC";
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(zone) || zone.length > 64 || !isTimeZone(zone)) {
    throw new InputError(
      "timeZone",
      `${JSON.stringify(zone.slice(0, 64))} is not a time zone: give an IANA name such as Europe/Paris or UTC`,
    );
  }
  return zone;
}

function validVmUuid(uuid: string): string {
  if (typeof uuid !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) {
    throw new InputError("vmUuid", "is not a VM uuid (8-4-4-4-12 hexadecimal digits)");
  }
  return uuid.toLowerCase();
}

function selectionOf(value: unknown): Selection {
  const raw = (value ?? {}) as { vmUuids?: string[]; smart?: Partial<Selection["smart"]> | null };
  const smart = raw.smart
    ? {
        poolIds: raw.smart.poolIds ?? [],
        tagsAll: raw.smart.tagsAll ?? [],
        tagsAny: raw.smart.tagsAny ?? [],
        tagsNone: raw.smart.tagsNone ?? [],
        powerStates: raw.smart.powerStates ?? [],
      }
    : null;
  return { vmUuids: raw.vmUuids ?? [], smart };
}

/** The longest interval, in seconds, between consecutive fire times of a cron from `at` on (null: fires less than twice). */
export function cronInterval(cron: string, timezone: string, at: Date): number | null {
  let times: Date[];
  try {
    times = new Cron(cron, { timezone, paused: true }).nextRuns(SAMPLED_FIRES, at);
  } catch {
    return null;
  }
  let longest: number | null = null;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest ?? 0, (times[i].getTime() - times[i - 1].getTime()) / 1000);
  return longest;
}

/**
 * The gaps of one VM: between consecutive good restore points, oldest first (the newest good one before the period opens
 * it), then from the newest good one to the end of the period. Met when every gap is within target plus grace (a tenth of
 * the target, at most an hour).
 */
export function rpoOf(vmUuid: string, rows: RpoPointRow[], from: Date, to: Date, target: number | null): RpoFigures {
  const grace = target === null ? 0 : Math.min(MAX_GRACE_SECONDS, Math.round(target / 10));
  const points: RpoFigures["points"] = [];
  let previousGood: Date | null = null;
  let maxGap: number | null = null;
  for (const row of rows) {
    const gap = row.good && previousGood ? (row.timestamp.getTime() - previousGood.getTime()) / 1000 : null;
    if (gap !== null) maxGap = Math.max(maxGap ?? 0, gap);
    if (row.timestamp >= from)
      points.push({ id: row.id, timestamp: row.timestamp, good: row.good, gapSeconds: gap === null ? null : Math.round(gap) });
    if (row.good) previousGood = row.timestamp;
  }
  const current = previousGood ? (to.getTime() - previousGood.getTime()) / 1000 : null;
  if (current !== null) maxGap = Math.max(maxGap ?? 0, current);
  return {
    vmUuid,
    targetSeconds: target === null ? null : Math.round(target),
    graceSeconds: grace,
    maxGapSeconds: maxGap === null ? null : Math.round(maxGap),
    currentGapSeconds: current === null ? null : Math.round(current),
    goodRestorePoints: points.filter((p) => p.good).length,
    restorePoints: points.length,
    met: target !== null && maxGap !== null && maxGap <= target + grace,
    points,
  };
}
