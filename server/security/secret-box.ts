/**
 * Seals secrets at rest (pool passwords, remote credentials) with AES-256-GCM and SECRET_KEY. A sealed value is
 * `v1:<base64(iv | tag | ciphertext)>`; opening one with another key fails loudly rather than returning garbage.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { CairnError, ErrorCode } from "../errors.js";

const VERSION = "v1";

export interface SecretBox {
  seal(plain: string): string;
  open(sealed: string): string;
}

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new CairnError(ErrorCode.InvalidConfig, "SECRET_KEY must be 32 bytes");
  return {
    seal(plain) {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      const ciphertext = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
      return `${VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64")}`;
    },
    open(sealed) {
      const [version, payload] = sealed.split(":", 2);
      if (version !== VERSION || !payload) {
        throw new CairnError(ErrorCode.Internal, "A stored secret has an unknown format: was the database written by a newer Cairn?");
      }
      const raw = Buffer.from(payload, "base64");
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
        decipher.setAuthTag(raw.subarray(12, 28));
        return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
      } catch (error) {
        throw new CairnError(
          ErrorCode.Internal,
          "A stored secret cannot be opened with this SECRET_KEY: the key changed since it was saved. Restore the old key or enter the secret again.",
          {},
          { cause: error },
        );
      }
    },
  };
}

/** SECRET_KEY when given, else the key kept in DATA_DIR/secret.key (created with mode 0600 on first start). */
export async function loadSecretKey(configured: Buffer | undefined, dataDir: string): Promise<Buffer> {
  if (configured) return configured;
  const file = path.join(dataDir, "secret.key");
  try {
    const key = Buffer.from((await fs.readFile(file, "utf8")).trim(), "hex");
    if (key.length !== 32) throw new CairnError(ErrorCode.InvalidConfig, `${file} does not hold a 32-byte hex key`);
    return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const key = randomBytes(32);
  await fs.mkdir(dataDir, { recursive: true });
  await fs.writeFile(file, key.toString("hex") + "\n", { mode: 0o600, flag: "wx" }).catch(async (error) => {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  });
  return Buffer.from((await fs.readFile(file, "utf8")).trim(), "hex");
}
