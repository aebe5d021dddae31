-- AlterTable
ALTER TABLE "Run" ADD COLUMN     "reportedAt" TIMESTAMP(3);

-- Runs that ended before reports existed are taken as reported: a first start after the upgrade must not mail the history.
UPDATE "Run" SET "reportedAt" = COALESCE("endedAt", "createdAt") WHERE status NOT IN ('PENDING', 'RUNNING');
