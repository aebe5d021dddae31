-- Mirror jobs: copy restore points from a source remote to the job's remotes.
-- AlterEnum
ALTER TYPE "BackupMode" ADD VALUE 'MIRROR';

-- AlterTable
ALTER TABLE "Job" ADD COLUMN     "sourceRemoteId" UUID;

-- AddForeignKey
ALTER TABLE "Job" ADD CONSTRAINT "Job_sourceRemoteId_fkey" FOREIGN KEY ("sourceRemoteId") REFERENCES "Remote"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
