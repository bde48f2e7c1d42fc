-- The relay (event store -> Kafka). Its checkpoint is the commit-order pair it
-- has published up to (DESIGN.md, "Commit order"); one row per relay name,
-- which is the topic prefix unless configured otherwise.
CREATE TABLE relay_checkpoints
(
    relay_name      text PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A wake-up hint for the relay, once per appending statement (and, since
-- PostgreSQL folds identical notifications, at most once per transaction).
-- Delivered at commit. Only a hint: the relay polls as well, and reads what
-- is committed, never what the notification says.
CREATE FUNCTION notify_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('ordertrail_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();
