-- CreateTable
CREATE TABLE "RestorePointHistory" (
    "id" UUID NOT NULL,
    "vmUuid" TEXT NOT NULL,
    "vmName" TEXT NOT NULL,
    "remoteId" UUID NOT NULL,
    "jobId" UUID,
    "runId" UUID,
    "sizeBytes" BIGINT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL,
    "removedAt" TIMESTAMP(3),

    CONSTRAINT "RestorePointHistory_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "RestorePointHistory_remoteId_createdAt_idx" ON "RestorePointHistory"("remoteId", "createdAt");

-- CreateIndex
CREATE INDEX "RestorePointHistory_vmUuid_createdAt_idx" ON "RestorePointHistory"("vmUuid", "createdAt");

-- CreateIndex
CREATE INDEX "RestorePointHistory_runId_idx" ON "RestorePointHistory"("runId");

-- The ledger is kept by Postgres itself, so that every writer of RestorePoint (backups, retention, rescans of a remote, the
-- cascade when a remote is removed) is covered. Pool restore points (snapshots, replicas: no remote) hold no remote bytes.
CREATE FUNCTION "restore_point_history_keep"() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    UPDATE "RestorePointHistory" SET "removedAt" = now() AT TIME ZONE 'UTC' WHERE "id" = OLD."id" AND "removedAt" IS NULL;
    RETURN OLD;
  END IF;
  IF NEW."remoteId" IS NULL THEN
    RETURN NEW;
  END IF;
  INSERT INTO "RestorePointHistory" ("id", "vmUuid", "vmName", "remoteId", "jobId", "runId", "sizeBytes", "createdAt")
  VALUES (NEW."id", NEW."vmUuid", NEW."vmName", NEW."remoteId", NEW."jobId", NEW."runId", NEW."sizeBytes", NEW."timestamp")
  ON CONFLICT ("id") DO UPDATE SET "vmName" = EXCLUDED."vmName", "remoteId" = EXCLUDED."remoteId", "jobId" = EXCLUDED."jobId",
    "runId" = coalesce(EXCLUDED."runId", "RestorePointHistory"."runId"), "sizeBytes" = EXCLUDED."sizeBytes",
    "createdAt" = EXCLUDED."createdAt";
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER "RestorePoint_history"
AFTER INSERT OR UPDATE OF "sizeBytes", "timestamp", "remoteId", "vmName" OR DELETE ON "RestorePoint"
FOR EACH ROW EXECUTE FUNCTION "restore_point_history_keep"();

-- The restore points already indexed start the ledger (those removed before this migration are not known any more).
INSERT INTO "RestorePointHistory" ("id", "vmUuid", "vmName", "remoteId", "jobId", "runId", "sizeBytes", "createdAt")
SELECT "id", "vmUuid", "vmName", "remoteId", "jobId", "runId", "sizeBytes", "timestamp" FROM "RestorePoint" WHERE "remoteId" IS NOT NULL;
