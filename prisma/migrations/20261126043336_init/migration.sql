-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "Role" AS ENUM ('ADMIN', 'OPERATOR', 'VIEWER');

-- CreateEnum
CREATE TYPE "TokenKind" AS ENUM ('SESSION', 'API');

-- CreateEnum
CREATE TYPE "RemoteKind" AS ENUM ('LOCAL', 'SMB', 'NFS', 'S3');

-- CreateEnum
CREATE TYPE "BackupMode" AS ENUM ('FULL', 'DELTA', 'ROLLING_SNAPSHOT', 'DISASTER_RECOVERY', 'CONTINUOUS_REPLICATION');

-- CreateEnum
CREATE TYPE "RunKind" AS ENUM ('BACKUP', 'RESTORE', 'HEALTH_CHECK');

-- CreateEnum
CREATE TYPE "RunStatus" AS ENUM ('PENDING', 'RUNNING', 'SUCCESS', 'FAILURE', 'SKIPPED', 'INTERRUPTED', 'CANCELLED');

-- CreateEnum
CREATE TYPE "TriggerKind" AS ENUM ('SCHEDULE', 'MANUAL', 'API');

-- CreateEnum
CREATE TYPE "RestorePointKind" AS ENUM ('XVA', 'VHD_CHAIN', 'SNAPSHOT', 'REPLICA');

-- CreateEnum
CREATE TYPE "Compression" AS ENUM ('NONE', 'GZIP', 'ZSTD');

-- CreateEnum
CREATE TYPE "VerificationStatus" AS ENUM ('UNVERIFIED', 'OK', 'FAILED');

-- CreateTable
CREATE TABLE "User" (
    "id" UUID NOT NULL,
    "username" TEXT NOT NULL,
    "passwordHash" TEXT NOT NULL,
    "role" "Role" NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ApiToken" (
    "id" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "kind" "TokenKind" NOT NULL,
    "name" TEXT NOT NULL,
    "role" "Role" NOT NULL,
    "tokenHash" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3),
    "revokedAt" TIMESTAMP(3),
    "lastUsedAt" TIMESTAMP(3),

    CONSTRAINT "ApiToken_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Pool" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "username" TEXT NOT NULL,
    "passwordSealed" TEXT NOT NULL,
    "allowUnauthorized" BOOLEAN NOT NULL DEFAULT false,
    "status" TEXT NOT NULL DEFAULT 'CONNECTING',
    "lastError" TEXT,
    "connectedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Pool_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "VmInventory" (
    "uuid" TEXT NOT NULL,
    "poolId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "tags" TEXT[],
    "powerState" TEXT NOT NULL,
    "lastSeenAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "VmInventory_pkey" PRIMARY KEY ("uuid")
);

-- CreateTable
CREATE TABLE "Remote" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "kind" "RemoteKind" NOT NULL,
    "location" TEXT NOT NULL,
    "options" JSONB NOT NULL DEFAULT '{}',
    "username" TEXT,
    "passwordSealed" TEXT,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "lastTest" JSONB,
    "freeBytes" BIGINT,
    "usedBytes" BIGINT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Remote_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Job" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "mode" "BackupMode" NOT NULL,
    "selection" JSONB NOT NULL,
    "srUuids" TEXT[],
    "settings" JSONB NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Job_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "JobRemote" (
    "jobId" UUID NOT NULL,
    "remoteId" UUID NOT NULL,

    CONSTRAINT "JobRemote_pkey" PRIMARY KEY ("jobId","remoteId")
);

-- CreateTable
CREATE TABLE "Schedule" (
    "id" UUID NOT NULL,
    "jobId" UUID NOT NULL,
    "name" TEXT,
    "cron" TEXT NOT NULL,
    "timezone" TEXT NOT NULL DEFAULT 'UTC',
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "exportRetention" INTEGER NOT NULL DEFAULT 0,
    "copyRetention" INTEGER NOT NULL DEFAULT 0,
    "snapshotRetention" INTEGER NOT NULL DEFAULT 0,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Schedule_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Run" (
    "id" UUID NOT NULL,
    "kind" "RunKind" NOT NULL DEFAULT 'BACKUP',
    "jobId" UUID,
    "scheduleId" UUID,
    "trigger" "TriggerKind" NOT NULL,
    "status" "RunStatus" NOT NULL DEFAULT 'PENDING',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMP(3),
    "endedAt" TIMESTAMP(3),
    "error" TEXT,
    "workerId" TEXT,
    "heartbeatAt" TIMESTAMP(3),
    "cancelRequestedAt" TIMESTAMP(3),
    "progress" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "transferredBytes" BIGINT NOT NULL DEFAULT 0,
    "vmsTotal" INTEGER NOT NULL DEFAULT 0,
    "vmsSucceeded" INTEGER NOT NULL DEFAULT 0,
    "vmsFailed" INTEGER NOT NULL DEFAULT 0,
    "vmUuids" TEXT[],
    "params" JSONB,

    CONSTRAINT "Run_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Task" (
    "id" UUID NOT NULL,
    "runId" UUID NOT NULL,
    "parentId" UUID,
    "position" INTEGER NOT NULL,
    "kind" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "status" "RunStatus" NOT NULL DEFAULT 'RUNNING',
    "progress" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "startedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "endedAt" TIMESTAMP(3),
    "message" TEXT,
    "warnings" TEXT[],
    "result" JSONB,
    "sizeBytes" BIGINT,
    "vmUuid" TEXT,

    CONSTRAINT "Task_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "RestorePoint" (
    "id" UUID NOT NULL,
    "kind" "RestorePointKind" NOT NULL,
    "vmUuid" TEXT NOT NULL,
    "vmName" TEXT NOT NULL,
    "timestamp" TIMESTAMP(3) NOT NULL,
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "remoteId" UUID,
    "path" TEXT,
    "poolId" UUID,
    "srUuid" TEXT,
    "objectUuid" TEXT,
    "jobId" UUID,
    "scheduleId" UUID,
    "runId" UUID,
    "quiesced" BOOLEAN NOT NULL DEFAULT false,
    "compression" "Compression" NOT NULL DEFAULT 'NONE',
    "disks" JSONB NOT NULL DEFAULT '[]',
    "chainLength" INTEGER NOT NULL DEFAULT 1,
    "chainParentId" UUID,
    "verificationStatus" "VerificationStatus" NOT NULL DEFAULT 'UNVERIFIED',
    "verificationCheckedAt" TIMESTAMP(3),
    "verificationError" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "RestorePoint_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "User_username_key" ON "User"("username");

-- CreateIndex
CREATE UNIQUE INDEX "ApiToken_tokenHash_key" ON "ApiToken"("tokenHash");

-- CreateIndex
CREATE INDEX "ApiToken_userId_idx" ON "ApiToken"("userId");

-- CreateIndex
CREATE UNIQUE INDEX "Pool_name_key" ON "Pool"("name");

-- CreateIndex
CREATE INDEX "VmInventory_poolId_idx" ON "VmInventory"("poolId");

-- CreateIndex
CREATE UNIQUE INDEX "Remote_name_key" ON "Remote"("name");

-- CreateIndex
CREATE UNIQUE INDEX "Job_name_key" ON "Job"("name");

-- CreateIndex
CREATE INDEX "JobRemote_remoteId_idx" ON "JobRemote"("remoteId");

-- CreateIndex
CREATE INDEX "Schedule_jobId_idx" ON "Schedule"("jobId");

-- CreateIndex
CREATE INDEX "Run_jobId_createdAt_idx" ON "Run"("jobId", "createdAt");

-- CreateIndex
CREATE INDEX "Run_status_idx" ON "Run"("status");

-- CreateIndex
CREATE INDEX "Run_createdAt_idx" ON "Run"("createdAt");

-- CreateIndex
CREATE INDEX "Task_runId_position_idx" ON "Task"("runId", "position");

-- CreateIndex
CREATE INDEX "Task_vmUuid_idx" ON "Task"("vmUuid");

-- CreateIndex
CREATE INDEX "RestorePoint_vmUuid_timestamp_idx" ON "RestorePoint"("vmUuid", "timestamp");

-- CreateIndex
CREATE INDEX "RestorePoint_jobId_timestamp_idx" ON "RestorePoint"("jobId", "timestamp");

-- CreateIndex
CREATE INDEX "RestorePoint_timestamp_idx" ON "RestorePoint"("timestamp");

-- CreateIndex
CREATE UNIQUE INDEX "RestorePoint_remoteId_path_key" ON "RestorePoint"("remoteId", "path");

-- AddForeignKey
ALTER TABLE "ApiToken" ADD CONSTRAINT "ApiToken_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "VmInventory" ADD CONSTRAINT "VmInventory_poolId_fkey" FOREIGN KEY ("poolId") REFERENCES "Pool"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "JobRemote" ADD CONSTRAINT "JobRemote_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "JobRemote" ADD CONSTRAINT "JobRemote_remoteId_fkey" FOREIGN KEY ("remoteId") REFERENCES "Remote"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Schedule" ADD CONSTRAINT "Schedule_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Run" ADD CONSTRAINT "Run_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Run" ADD CONSTRAINT "Run_scheduleId_fkey" FOREIGN KEY ("scheduleId") REFERENCES "Schedule"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Task" ADD CONSTRAINT "Task_runId_fkey" FOREIGN KEY ("runId") REFERENCES "Run"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "RestorePoint" ADD CONSTRAINT "RestorePoint_remoteId_fkey" FOREIGN KEY ("remoteId") REFERENCES "Remote"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "RestorePoint" ADD CONSTRAINT "RestorePoint_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "RestorePoint" ADD CONSTRAINT "RestorePoint_scheduleId_fkey" FOREIGN KEY ("scheduleId") REFERENCES "Schedule"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "RestorePoint" ADD CONSTRAINT "RestorePoint_runId_fkey" FOREIGN KEY ("runId") REFERENCES "Run"("id") ON DELETE SET NULL ON UPDATE CASCADE;
