-- CreateEnum
CREATE TYPE "IntegrityStatus" AS ENUM ('UNVERIFIED', 'OK', 'DAMAGED', 'REPAIRED');

-- AlterEnum
ALTER TYPE "BackupMode" ADD VALUE 'VERIFY';

-- AlterEnum
ALTER TYPE "RunKind" ADD VALUE 'VERIFY';

-- AlterTable
ALTER TABLE "RestorePoint" ADD COLUMN     "integrityProblems" JSONB NOT NULL DEFAULT '[]',
ADD COLUMN     "integrityRepaired" JSONB NOT NULL DEFAULT '[]',
ADD COLUMN     "integrityStatus" "IntegrityStatus" NOT NULL DEFAULT 'UNVERIFIED',
ADD COLUMN     "verifiedAt" TIMESTAMP(3);

-- CreateIndex
CREATE INDEX "RestorePoint_integrityStatus_idx" ON "RestorePoint"("integrityStatus");
