/**
 * The remotes the database knows, as the engine needs them: a row by id, and a handle on its storage with its secret
 * opened. The API's RemoteService (server/services) manages the rows; everything that reads or writes backups opens them here.
 */
import type { Db } from "../db/prisma.js";
import { validUuid } from "../domain/ids.js";
import { notFound } from "../errors.js";
import { createRemote } from "../remotes/create-remote.js";
import type { Remote } from "../remotes/remote.js";
import type { SecretBox } from "../security/secret-box.js";

export type RemoteRow = NonNullable<Awaited<ReturnType<Db["remote"]["findUnique"]>>>;

export interface StoredRemotes {
  /** The row of a remote. @throws NOT_FOUND naming the remote */
  get(id: string): Promise<RemoteRow>;
  /** A handle on the storage of a stored remote (not opened). */
  open(row: RemoteRow): Remote;
}

export function createStoredRemotes(db: Db, secrets: SecretBox): StoredRemotes {
  return {
    async get(id) {
      const remote = await db.remote.findUnique({ where: { id: validUuid(id, "remote") } });
      if (!remote) throw notFound("remote", id);
      return remote;
    },
    open(row) {
      return createRemote({
        kind: row.kind,
        location: row.location,
        options: (row.options ?? {}) as Record<string, unknown>,
        username: row.username ?? undefined,
        password: row.passwordSealed ? secrets.open(row.passwordSealed) : undefined,
        encryptionKey: row.encryptionKeySealed ? secrets.open(row.encryptionKeySealed) : undefined,
        immutabilityDays: row.immutabilityDays,
      });
    },
  };
}
