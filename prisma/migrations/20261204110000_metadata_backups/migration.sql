-- Metadata backups (issue 12): a job mode, and the index of what the remotes hold (server/repository/FORMAT.md).
ALTER TYPE "BackupMode" ADD VALUE 'METADATA';

-- CreateEnum
CREATE TYPE "MetadataBackupKind" AS ENUM ('POOL', 'CAIRN');

-- CreateTable
CREATE TABLE "MetadataBackup" (
    "id" UUID NOT NULL,
    "kind" "MetadataBackupKind" NOT NULL,
    "poolId" UUID,
    "poolUuid" TEXT,
    "poolName" TEXT,
    "remoteId" UUID NOT NULL,
    "path" TEXT NOT NULL,
    "timestamp" TIMESTAMP(3) NOT NULL,
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "secretsIncluded" BOOLEAN NOT NULL DEFAULT false,
    "jobId" UUID,
    "runId" UUID,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "MetadataBackup_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "MetadataBackup_remoteId_path_key" ON "MetadataBackup"("remoteId", "path");

-- CreateIndex
CREATE INDEX "MetadataBackup_kind_poolUuid_timestamp_idx" ON "MetadataBackup"("kind", "poolUuid", "timestamp");

-- CreateIndex
CREATE INDEX "MetadataBackup_timestamp_idx" ON "MetadataBackup"("timestamp");

-- AddForeignKey
ALTER TABLE "MetadataBackup" ADD CONSTRAINT "MetadataBackup_remoteId_fkey" FOREIGN KEY ("remoteId") REFERENCES "Remote"("id") ON DELETE CASCADE ON UPDATE CASCADE;
