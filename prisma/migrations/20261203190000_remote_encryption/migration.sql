-- AlterTable
ALTER TABLE "Remote" ADD COLUMN     "encryptionKeySealed" TEXT;
