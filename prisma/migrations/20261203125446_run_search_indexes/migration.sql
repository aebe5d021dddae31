-- CreateIndex
CREATE INDEX "Run_kind_createdAt_idx" ON "Run"("kind", "createdAt");

-- CreateIndex
CREATE INDEX "Task_message_trgm_idx" ON "Task" USING GIN ("message" gin_trgm_ops);
