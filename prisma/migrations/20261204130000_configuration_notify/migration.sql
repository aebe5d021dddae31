-- Changes to what a job is (Job, Schedule, JobRemote) and to remotes are announced on the channel cairn_configuration
-- (server/events/event-bus.ts relays it to server/services/configuration-cache.ts), so that every Cairn process drops the
-- jobs and remotes lists it answers from memory, whoever made the change: another process, an administrator in psql. Kept
-- by Postgres itself, so that no writer can forget it. One notification per statement, naming the table: the listeners drop
-- everything, and identical notifications of one transaction are sent once.
CREATE FUNCTION "configuration_notify"() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('cairn_configuration', TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER "Job_configuration" AFTER INSERT OR UPDATE OR DELETE ON "Job" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "Job_configuration_truncate" AFTER TRUNCATE ON "Job" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "Schedule_configuration" AFTER INSERT OR UPDATE OR DELETE ON "Schedule" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "Schedule_configuration_truncate" AFTER TRUNCATE ON "Schedule" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "JobRemote_configuration" AFTER INSERT OR UPDATE OR DELETE ON "JobRemote" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "JobRemote_configuration_truncate" AFTER TRUNCATE ON "JobRemote" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "Remote_configuration" AFTER INSERT OR UPDATE OR DELETE ON "Remote" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
CREATE TRIGGER "Remote_configuration_truncate" AFTER TRUNCATE ON "Remote" FOR EACH STATEMENT EXECUTE FUNCTION "configuration_notify"();
