/**
 * retentionPreview: what the next run of a schedule would keep and remove, from the restore points indexed for its job and
 * schedule, decided by the same pure rules as the run's retention (server/domain/gfs-retention.ts).
 */
import type { Db } from "../db/prisma.js";
import { type GfsPolicy, decideRetention } from "../domain/gfs-retention.js";
import { validUuid } from "../domain/ids.js";
import { nextRunAt } from "../domain/schedule.js";
import { notFound } from "../errors.js";

type RestorePointRow = NonNullable<Awaited<ReturnType<Db["restorePoint"]["findUnique"]>>>;

export interface RetentionPreviewDecision {
  restorePoint: RestorePointRow;
  keep: boolean;
  reasons: string[];
}

/** The id the next run's own backup stands under while deciding: it takes a place among the newest, as it will. */
const NEXT_BACKUP = "the next run's backup";

export class RetentionPreviewService {
  constructor(private readonly db: Db) {}

  /**
   * Each restore point of the schedule on a remote, newest first, with what the schedule's next run would do to it. Retention
   * runs per VM and per remote after the run's new backup: so does this, with that backup taken at the schedule's next fire
   * time (now, for a disabled schedule run by hand), and the calendar periods of that time.
   * @throws CairnError NOT_FOUND when the job, or the schedule in that job, does not exist
   */
  async preview(jobId: string, scheduleId: string, now = new Date()): Promise<RetentionPreviewDecision[]> {
    const job = await this.db.job.findUnique({ where: { id: validUuid(jobId, "job") }, include: { schedules: true } });
    if (!job) throw notFound("job", jobId);
    const schedule = job.schedules.find((s) => s.id === scheduleId);
    if (!schedule) throw notFound(`schedule of job ${job.name}`, scheduleId);
    const points = await this.db.restorePoint.findMany({
      where: { jobId: job.id, scheduleId: schedule.id, remoteId: { not: null } },
      orderBy: [{ timestamp: "desc" }, { id: "desc" }],
    });
    if (schedule.exportRetention <= 0) {
      // Runs skip retention then (engine/backup/remote-backup-index.ts): every backup stays.
      const why = "exportRetention is 0: this schedule's runs remove no backup";
      return points.map((restorePoint) => ({ restorePoint, keep: true, reasons: [why] }));
    }
    const decidedAt = nextRunAt(schedule, now) ?? now;
    const policy: GfsPolicy = {
      keepLast: schedule.exportRetention,
      days: schedule.gfsDays,
      weeks: schedule.gfsWeeks,
      months: schedule.gfsMonths,
      years: schedule.gfsYears,
      timeZone: schedule.timezone,
      weekStart: schedule.weekStart,
      dayStartHour: schedule.dayStartHour,
    };
    const groups = new Map<string, RestorePointRow[]>();
    for (const point of points) {
      const key = `${point.remoteId}/${point.vmUuid}`;
      groups.set(key, [...(groups.get(key) ?? []), point]);
    }
    const decided = new Map<string, { keep: boolean; reasons: string[] }>();
    for (const group of groups.values()) {
      const candidates = [
        ...group.map((point) => ({ id: point.id, timestamp: point.timestamp })),
        { id: NEXT_BACKUP, timestamp: Math.max(decidedAt.getTime(), ...group.map((point) => point.timestamp.getTime() + 1000)) },
      ];
      for (const decision of decideRetention(candidates, policy, decidedAt)) decided.set(decision.id, decision);
    }
    return points.map((restorePoint) => {
      const { keep, reasons } = decided.get(restorePoint.id) ?? { keep: true, reasons: [] };
      return { restorePoint, keep, reasons };
    });
  }
}
