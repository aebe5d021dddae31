-- CreateEnum
CREATE TYPE "SkipReason" AS ENUM ('JOB_BUSY', 'NOTHING_SELECTED');

-- AlterTable
ALTER TABLE "Run" ADD COLUMN     "skipReason" "SkipReason";

-- SKIPPED runs recorded before the column existed: the launcher's busy-job sentence (run-launcher.ts, BUSY_JOB_MESSAGE) was
-- the only way to tell them apart; every other SKIPPED run was an executor finding nothing to do. Read once, here.
UPDATE "Run" SET "skipReason" = CASE WHEN error LIKE '%the previous run of this job was still running%' THEN 'JOB_BUSY'::"SkipReason" ELSE 'NOTHING_SELECTED'::"SkipReason" END
WHERE status = 'SKIPPED';
