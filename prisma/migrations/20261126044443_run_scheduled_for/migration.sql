-- AlterTable
ALTER TABLE "Run" ADD COLUMN     "scheduledFor" TIMESTAMP(3);

-- CreateIndex
CREATE UNIQUE INDEX "Run_scheduleId_scheduledFor_key" ON "Run"("scheduleId", "scheduledFor");
