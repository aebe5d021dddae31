/** Questions asked of the whole history: backup totals per day / week / job / VM, and how protected each VM is. */
import type { Db } from "../db/prisma.js";
import { backupStatsSql, vmProtectionSql, type ProtectionRow, type StatsGroupBy, type StatsRow } from "../db/stats.sql.js";
import { InputError } from "../errors.js";
import { validUuid } from "../domain/ids.js";
import { integerInRange } from "./input-checks.js";

const MAX_RANGE_DAYS = 3660;

export class StatsService {
  constructor(private readonly db: Db) {}

  async backupStats(from: Date, to: Date, groupBy: StatsGroupBy) {
    if (!(to > from)) throw new InputError("to", "must be after from");
    if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * 86400_000)
      throw new InputError("to", `the range must be at most ${MAX_RANGE_DAYS} days`);
    const rows = await this.db.$queryRaw<StatsRow[]>(backupStatsSql(from, to, groupBy));
    return rows.map((row) => ({
      key: row.key,
      label: row.label,
      runs: Number(row.runs),
      succeeded: Number(row.succeeded),
      failed: Number(row.failed),
      bytes: Number(row.bytes),
      durationSeconds: Math.round(Number(row.duration_seconds)),
    }));
  }

  async vmProtection(poolId: string | null | undefined, olderThanHours: number | null | undefined) {
    const hours = integerInRange(olderThanHours ?? 24, "olderThanHours", 1, 24 * 3660);
    const rows = await this.db.$queryRaw<ProtectionRow[]>(vmProtectionSql(poolId ? validUuid(poolId, "pool") : null));
    const now = Date.now();
    return rows.map((row) => {
      const ageHours = row.last_good_at ? (now - row.last_good_at.getTime()) / 3600_000 : null;
      return {
        vmUuid: row.uuid,
        lastGoodRestorePointId: row.last_good_id,
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
}
