-- Immutability: a remote's window in days, and until when each restore point is immutable.
-- AlterTable
ALTER TABLE "Remote" ADD COLUMN     "immutabilityDays" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "RestorePoint" ADD COLUMN     "immutableUntil" TIMESTAMP(3);
