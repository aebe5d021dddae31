-- CreateExtension
-- pg_trgm (the trigram index of Run.error below) is a trusted extension since PostgreSQL 13: the owner of the database may
-- create it. On an external server without the contrib extensions, install them (postgresql-contrib) first.
CREATE EXTENSION IF NOT EXISTS "pg_trgm";

-- CreateIndex
CREATE INDEX "Run_jobId_status_createdAt_idx" ON "Run"("jobId", "status", "createdAt");

-- CreateIndex
CREATE INDEX "Run_vmUuids_idx" ON "Run" USING GIN ("vmUuids");

-- CreateIndex
CREATE INDEX "Run_error_trgm_idx" ON "Run" USING GIN ("error" gin_trgm_ops);

-- CreateIndex
CREATE INDEX "RestorePoint_runId_idx" ON "RestorePoint"("runId");
