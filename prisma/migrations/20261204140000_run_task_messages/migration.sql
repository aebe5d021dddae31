-- Run.taskMessages: the distinct messages of a run's tasks, one per line, for the runs page's search. Searching the tasks
-- themselves found the matching tasks by their trigram index, then read each one's row to learn its run (at a million runs,
-- a word in 32,000 task messages read 9,000 heap blocks, 110 ms) before the runs were read again to be sorted and counted.
-- On the run, the match is one more branch of the bitmap OR the runs query already builds (error, job, VMs, ...), read once.
--
-- Kept by Postgres itself, so that no writer can forget it: a task inserted with a message or whose message changes
-- recomputes its run's text at the end of its transaction (a deferred constraint trigger). The recomputation locks the run's
-- row first and then reads the tasks with a new snapshot (READ COMMITTED takes one per statement), so two transactions
-- changing tasks of the same run cannot each overwrite the other's message; and because it runs at commit, after every
-- task row the transaction changed is already locked, it never holds a run while waiting for a task. Tasks are deleted only
-- with their run (cascade, history retention), so a deletion needs nothing.

ALTER TABLE "Run" ADD COLUMN "taskMessages" TEXT;

CREATE FUNCTION "run_task_messages_refresh"(run UUID) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM "Run" WHERE id = run FOR NO KEY UPDATE;
  UPDATE "Run" r SET "taskMessages" = m.messages
  FROM (
    SELECT string_agg(DISTINCT message, E'\n' ORDER BY message) AS messages
    FROM "Task" WHERE "runId" = run AND message IS NOT NULL
  ) m
  WHERE r.id = run AND r."taskMessages" IS DISTINCT FROM m.messages;
END;
$$;

CREATE FUNCTION "run_task_messages_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM "run_task_messages_refresh"(NEW."runId");
  RETURN NULL;
END;
$$;

-- Every run's text from scratch (here, and after a bulk load with the triggers disabled: bench/history.ts).
CREATE FUNCTION "run_task_messages_rebuild"() RETURNS void LANGUAGE sql AS $$
  UPDATE "Run" r SET "taskMessages" = m.messages
  FROM (
    SELECT "runId", string_agg(DISTINCT message, E'\n' ORDER BY message) AS messages
    FROM "Task" WHERE message IS NOT NULL GROUP BY "runId"
  ) m
  WHERE r.id = m."runId" AND r."taskMessages" IS DISTINCT FROM m.messages;
  UPDATE "Run" r SET "taskMessages" = NULL
  WHERE r."taskMessages" IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM "Task" t WHERE t."runId" = r.id AND t.message IS NOT NULL);
$$;

CREATE CONSTRAINT TRIGGER "Task_message_inserted" AFTER INSERT ON "Task" DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.message IS NOT NULL) EXECUTE FUNCTION "run_task_messages_changed"();
CREATE CONSTRAINT TRIGGER "Task_message_updated" AFTER UPDATE OF message ON "Task" DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (OLD.message IS DISTINCT FROM NEW.message) EXECUTE FUNCTION "run_task_messages_changed"();

SELECT "run_task_messages_rebuild"();

-- The search reads runs, no longer tasks.
DROP INDEX "Task_message_trgm_idx";
CREATE INDEX "Run_taskMessages_trgm_idx" ON "Run" USING GIN ("taskMessages" gin_trgm_ops);
