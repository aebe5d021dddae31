-- Credential changes are announced on the channel cairn_credentials (server/events/event-bus.ts relays it to AuthService),
-- so that every Cairn process drops the credentials it has verified and cached, and re-checks its open sockets, whoever made
-- the change: another process, an administrator in psql. Kept by Postgres itself, so that no writer can forget it. The payload
-- only names the table: the listeners drop everything, and identical notifications of one transaction are sent once.
CREATE FUNCTION "credential_notify"() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('cairn_credentials', TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Any change but lastUsedAt moving forward (Cairn's own throttled write on use); lastUsedAt moved back or cleared is a
-- change, so that the next use writes it again.
CREATE TRIGGER "ApiToken_credential_update"
AFTER UPDATE ON "ApiToken"
FOR EACH ROW
WHEN (
  (to_jsonb(OLD) - 'lastUsedAt') IS DISTINCT FROM (to_jsonb(NEW) - 'lastUsedAt')
  OR (OLD."lastUsedAt" IS NOT NULL AND (NEW."lastUsedAt" IS NULL OR NEW."lastUsedAt" < OLD."lastUsedAt"))
)
EXECUTE FUNCTION "credential_notify"();

CREATE TRIGGER "ApiToken_credential_delete" AFTER DELETE ON "ApiToken" FOR EACH ROW EXECUTE FUNCTION "credential_notify"();
CREATE TRIGGER "ApiToken_credential_truncate" AFTER TRUNCATE ON "ApiToken" FOR EACH STATEMENT EXECUTE FUNCTION "credential_notify"();

-- A user's name, role, disabledAt and passwordChangedAt are part of what its credentials stand for.
CREATE TRIGGER "User_credential_update"
AFTER UPDATE ON "User"
FOR EACH ROW
WHEN (to_jsonb(OLD) IS DISTINCT FROM to_jsonb(NEW))
EXECUTE FUNCTION "credential_notify"();

CREATE TRIGGER "User_credential_delete" AFTER DELETE ON "User" FOR EACH ROW EXECUTE FUNCTION "credential_notify"();
CREATE TRIGGER "User_credential_truncate" AFTER TRUNCATE ON "User" FOR EACH STATEMENT EXECUTE FUNCTION "credential_notify"();
