-- AlterTable
ALTER TABLE "Pool" ADD COLUMN     "tlsFingerprint" TEXT;
