-- The postgres-es event store, plus the columns DESIGN.md adds. postgres-es's
-- INSERT names its seven columns; the extra ones are filled by their defaults.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- Assigned at insert, not at commit: readers must not follow it alone.
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    -- The inserting transaction; commit order is read as (transaction_id, global_position)
    -- below pg_snapshot_xmin(pg_current_snapshot()).
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid                         NOT NULL DEFAULT gen_random_uuid(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    -- Optimistic concurrency: a second writer of the same sequence loses.
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE INDEX events_commit_order ON events (transaction_id, global_position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- postgres-es snapshots (unused unless snapshotting is switched on).
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Every command that appended events, written by a trigger in the same
-- transaction as the events. A second transaction appending events for the
-- same command_id fails with unique_violation (SQLSTATE 23505), which
-- postgres-es reports as an optimistic-lock conflict; the command service then
-- finds the first append here and answers with it. This is what makes retries,
-- racing duplicates and retries after a crash between append and response
-- append exactly once.
CREATE TABLE command_log
(
    command_id     uuid PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION record_command() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    cid uuid;
BEGIN
    cid := (NEW.metadata ->> 'command_id')::uuid;
    IF cid IS NULL THEN
        RETURN NEW;
    END IF;
    INSERT INTO command_log (command_id, aggregate_type, aggregate_id, first_sequence, last_sequence)
    VALUES (cid, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.sequence)
    ON CONFLICT (command_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence
    WHERE command_log.transaction_id = pg_current_xact_id()
      AND command_log.aggregate_type = EXCLUDED.aggregate_type
      AND command_log.aggregate_id = EXCLUDED.aggregate_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command % was already applied', cid USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_record_command
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION record_command();

-- Idempotency-Key bookkeeping for the HTTP API. The appended events are found
-- through command_log (atomic with the append); this table remembers the
-- request fingerprint (a reused key with another body is a 422) and the
-- response of requests that appended nothing (rejections), so a retry returns
-- the first answer.
CREATE TABLE idempotency_keys
(
    scope           text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    command_id      uuid        NOT NULL,
    status_code     integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (scope, idempotency_key)
);
