-- CreateTable
CREATE TABLE "PoolConnectionChange" (
    "id" UUID NOT NULL,
    "poolId" UUID NOT NULL,
    "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "status" TEXT NOT NULL,
    "reason" TEXT,

    CONSTRAINT "PoolConnectionChange_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "PoolConnectionChange_poolId_at_idx" ON "PoolConnectionChange"("poolId", "at");

-- AddForeignKey
ALTER TABLE "PoolConnectionChange" ADD CONSTRAINT "PoolConnectionChange_poolId_fkey" FOREIGN KEY ("poolId") REFERENCES "Pool"("id") ON DELETE CASCADE ON UPDATE CASCADE;
