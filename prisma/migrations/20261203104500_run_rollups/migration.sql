-- CreateTable
CREATE TABLE "RunSlotStats" (
    "slot" TIMESTAMP(3) NOT NULL,
    "runs" BIGINT NOT NULL DEFAULT 0,
    "succeeded" BIGINT NOT NULL DEFAULT 0,
    "failed" BIGINT NOT NULL DEFAULT 0,
    "bytes" DECIMAL(38,0) NOT NULL DEFAULT 0,
    "ended" BIGINT NOT NULL DEFAULT 0,
    "durationSeconds" DECIMAL(38,6) NOT NULL DEFAULT 0,
    "maxDurationSeconds" DECIMAL(38,6),

    CONSTRAINT "RunSlotStats_pkey" PRIMARY KEY ("slot")
);

-- CreateTable
CREATE TABLE "RunCount" (
    "jobId" UUID NOT NULL,
    "status" "RunStatus" NOT NULL,
    "runs" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "RunCount_pkey" PRIMARY KEY ("jobId","status")
);

-- Rollups of Run kept by Postgres itself (statement triggers with transition tables), so that no writer can forget them: the
-- engine, retention, a job's deletion (jobId set to NULL), an administrator in psql. Why these and not a covering index: at a
-- million runs, backupStats by day over a year read every run of the year however the index is shaped (2-3 s), and the runs
-- page's unfiltered count read a million index entries (100-160 ms); the rollups answer in a few thousand rows and one row.
--
-- RunCount only ever adds deltas (an UPSERT adding to the row), which commute: exact under any concurrency. RunSlotStats
-- holds a maximum, which a deletion cannot subtract, so each slot a statement touched is recomputed from its runs (a few,
-- by the createdAt index) after locking the slot's row: a concurrent writer of the same slot waits for the commit, and its
-- own recomputation (a new snapshot per statement in READ COMMITTED) then sees this one's runs. Locks are taken in slot order,
-- and counts before slots, so that two statements cannot wait on each other.

-- The 15-minute slot (UTC) of a creation time.
CREATE FUNCTION "run_slot"(at TIMESTAMP(3)) RETURNS TIMESTAMP(3) LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT date_bin('15 minutes', at, TIMESTAMP '2000-01-01')
$$;

-- Recomputes these slots (any order, duplicates and NULLs allowed) from the backup runs created in them.
CREATE FUNCTION "run_slots_recompute"(wanted TIMESTAMP(3)[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  slots TIMESTAMP(3)[];
  locked BIGINT;
BEGIN
  SELECT array_agg(DISTINCT s ORDER BY s) INTO slots FROM unnest(wanted) s WHERE s IS NOT NULL;
  IF slots IS NULL THEN
    RETURN;
  END IF;
  -- A slot row deleted (emptied) by a concurrent statement is skipped by FOR UPDATE: insert it again and retry.
  LOOP
    INSERT INTO "RunSlotStats" (slot) SELECT s FROM unnest(slots) s ORDER BY s ON CONFLICT (slot) DO NOTHING;
    SELECT count(*) INTO locked FROM (SELECT 1 FROM "RunSlotStats" WHERE slot = ANY (slots) ORDER BY slot FOR UPDATE) l;
    EXIT WHEN locked = cardinality(slots);
  END LOOP;
  UPDATE "RunSlotStats" t
  SET runs = f.runs, succeeded = f.succeeded, failed = f.failed, bytes = f.bytes, ended = f.ended,
      "durationSeconds" = f.duration, "maxDurationSeconds" = f.longest
  FROM (
    SELECT u.slot,
           count(r.id) AS runs,
           count(*) FILTER (WHERE r.status = 'SUCCESS') AS succeeded,
           count(*) FILTER (WHERE r.status IN ('FAILURE', 'INTERRUPTED')) AS failed,
           coalesce(sum(r."transferredBytes"), 0) AS bytes,
           count(r."endedAt" - r."startedAt") AS ended,
           coalesce(sum(extract(epoch FROM r."endedAt" - r."startedAt")), 0) AS duration,
           max(extract(epoch FROM r."endedAt" - r."startedAt")) AS longest
    FROM unnest(slots) u(slot)
    LEFT JOIN "Run" r ON r.kind = 'BACKUP' AND r."createdAt" >= u.slot AND r."createdAt" < u.slot + interval '15 minutes'
    GROUP BY u.slot
  ) f
  WHERE t.slot = f.slot;
  DELETE FROM "RunSlotStats" WHERE slot = ANY (slots) AND runs = 0;
END;
$$;

CREATE FUNCTION "run_rollups_insert"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "RunCount" ("jobId", status, runs)
  SELECT coalesce("jobId", '00000000-0000-0000-0000-000000000000'), status, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT ("jobId", status) DO UPDATE SET runs = "RunCount".runs + excluded.runs;
  PERFORM "run_slots_recompute"(ARRAY(SELECT "run_slot"("createdAt") FROM new_rows WHERE kind = 'BACKUP'));
  RETURN NULL;
END;
$$;

CREATE FUNCTION "run_rollups_delete"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "RunCount" ("jobId", status, runs)
  SELECT coalesce("jobId", '00000000-0000-0000-0000-000000000000'), status, -count(*) FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT ("jobId", status) DO UPDATE SET runs = "RunCount".runs + excluded.runs;
  PERFORM "run_slots_recompute"(ARRAY(SELECT "run_slot"("createdAt") FROM old_rows WHERE kind = 'BACKUP'));
  RETURN NULL;
END;
$$;

-- Most updates (progress, heartbeats, reports) change nothing counted: they cost the join below and nothing else.
CREATE FUNCTION "run_rollups_update"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "RunCount" ("jobId", status, runs)
  SELECT d.job, d.status, sum(d.n) FROM (
    SELECT coalesce(n."jobId", '00000000-0000-0000-0000-000000000000') AS job, n.status, 1 AS n, o.id
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE (o."jobId", o.status) IS DISTINCT FROM (n."jobId", n.status)
    UNION ALL
    SELECT coalesce(o."jobId", '00000000-0000-0000-0000-000000000000'), o.status, -1, o.id
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE (o."jobId", o.status) IS DISTINCT FROM (n."jobId", n.status)
  ) d
  GROUP BY 1, 2 HAVING sum(d.n) <> 0 ORDER BY 1, 2
  ON CONFLICT ("jobId", status) DO UPDATE SET runs = "RunCount".runs + excluded.runs;
  PERFORM "run_slots_recompute"(ARRAY(
    SELECT s FROM old_rows o JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL (VALUES ("run_slot"(o."createdAt")), ("run_slot"(n."createdAt"))) v(s)
    WHERE (o.kind = 'BACKUP' OR n.kind = 'BACKUP')
      AND (o.kind, o."createdAt", o.status, o."startedAt", o."endedAt", o."transferredBytes")
          IS DISTINCT FROM (n.kind, n."createdAt", n.status, n."startedAt", n."endedAt", n."transferredBytes")));
  RETURN NULL;
END;
$$;

CREATE FUNCTION "run_rollups_truncate"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE "RunSlotStats", "RunCount";
  RETURN NULL;
END;
$$;

-- Both rollups from scratch (here, and after a bulk load with the triggers disabled: bench/history.ts).
CREATE FUNCTION "run_rollups_rebuild"() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  LOCK TABLE "Run" IN SHARE MODE;
  DELETE FROM "RunSlotStats";
  DELETE FROM "RunCount";
  INSERT INTO "RunSlotStats" (slot, runs, succeeded, failed, bytes, ended, "durationSeconds", "maxDurationSeconds")
  SELECT "run_slot"(r."createdAt"), count(*),
         count(*) FILTER (WHERE r.status = 'SUCCESS'),
         count(*) FILTER (WHERE r.status IN ('FAILURE', 'INTERRUPTED')),
         coalesce(sum(r."transferredBytes"), 0),
         count(r."endedAt" - r."startedAt"),
         coalesce(sum(extract(epoch FROM r."endedAt" - r."startedAt")), 0),
         max(extract(epoch FROM r."endedAt" - r."startedAt"))
  FROM "Run" r WHERE r.kind = 'BACKUP' GROUP BY 1;
  INSERT INTO "RunCount" ("jobId", status, runs)
  SELECT coalesce("jobId", '00000000-0000-0000-0000-000000000000'), status, count(*) FROM "Run" GROUP BY 1, 2;
END;
$$;

CREATE TRIGGER "Run_rollups_insert" AFTER INSERT ON "Run" REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION "run_rollups_insert"();
CREATE TRIGGER "Run_rollups_update" AFTER UPDATE ON "Run" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION "run_rollups_update"();
CREATE TRIGGER "Run_rollups_delete" AFTER DELETE ON "Run" REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION "run_rollups_delete"();
CREATE TRIGGER "Run_rollups_truncate" AFTER TRUNCATE ON "Run" FOR EACH STATEMENT EXECUTE FUNCTION "run_rollups_truncate"();

SELECT "run_rollups_rebuild"();
