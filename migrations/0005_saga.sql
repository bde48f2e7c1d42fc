-- The saga (events -> follow-up commands, commands/src/saga). Its own
-- bookkeeping only: what it sends goes through the command service and ends
-- up in `events` like every other command.

-- Kafka position per consumer group and topic partition: the first offset
-- whose commands are not known to be done. Advanced after an event's commands
-- have finished (they are idempotent by command id), never before; it only
-- moves forward. The consumer seeks here on assignment and skips any message
-- below it.
CREATE TABLE saga_offsets
(
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Timeouts and stored retries, fired by the saga's poller. One row per
-- (kind, aggregate, attempt); the id is derived from that triple, so the event
-- that schedules a timer may be handled any number of times. Commands a timer
-- sends derive their ids from timer_id, so a timer that fires twice (a crash
-- before `fired_at` was committed) acts once.
CREATE TABLE saga_timers
(
    timer_id       uuid PRIMARY KEY,
    -- authorize_retry: authorize a card payment again after the provider was unavailable
    -- accept_timeout:  cancel a confirmed order the restaurant did not accept in time
    -- assign_timeout:  flag a delivery no rider took in time
    kind           text        NOT NULL CHECK (kind IN ('authorize_retry', 'accept_timeout', 'assign_timeout')),
    -- Order id (authorize_retry, accept_timeout) or delivery id (assign_timeout).
    aggregate_id   text        NOT NULL,
    -- Retry number for authorize_retry (1 = first retry), 0 otherwise.
    attempt        integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    due_at         timestamptz NOT NULL,
    -- Of the event that scheduled the timer; carried by the commands it sends.
    correlation_id uuid        NOT NULL,
    causation_id   uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    fired_at       timestamptz,
    -- What firing did, for operators: e.g. `cancelled`, `no_longer_needed`.
    outcome        text,
    UNIQUE (kind, aggregate_id, attempt)
);
CREATE INDEX saga_timers_due ON saga_timers (due_at) WHERE fired_at IS NULL;
