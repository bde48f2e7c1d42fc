-- The one consumer runtime (platform/src/consumer) serves the saga and every
-- projector. It reads the event store in commit order (catch-up, rebuild,
-- recovery) and Kafka (live, scale-out); the per-aggregate sequence guard
-- (`projector_sequences`, keyed by consumer name, the saga included) makes
-- the hand-over between the two exact.

-- One row per consumer (projector name, or `saga`).
--   store_txid/store_position: everything in the store up to and including
--     this commit-order position (`(transaction_id, global_position)`) of the
--     consumer's aggregate types has been applied. Advanced by store reads
--     and, while following Kafka, by a fence that checks the sequence guard.
--   kafka_cluster: the broker cluster the Kafka offsets in
--     `projector_offsets` point into. Offsets of another cluster are dropped
--     and the consumer recovers from the store before following Kafka.
-- Every batch transaction takes this row FOR SHARE, so a rebuild's swap
-- (FOR UPDATE) pauses the live consumer while it swaps.
CREATE TABLE consumers
(
    consumer       text        PRIMARY KEY,
    store_txid     xid8        NOT NULL DEFAULT '0'::xid8,
    store_position bigint      NOT NULL DEFAULT 0,
    kafka_cluster  text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per running (or recently running) process of a consumer: its
-- heartbeat, what it is doing and the last error, for the status query and
-- metrics. A consumer stopped on an event it cannot apply says so here,
-- naming the event, and keeps retrying; it never skips.
CREATE TABLE consumer_instances
(
    consumer      text        NOT NULL,
    instance      text        NOT NULL,
    -- starting | catching_up | following | recovering | stalled | stopped
    state         text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    last_error_at timestamptz,
    -- The event a stalled consumer cannot apply (id, type, aggregate, where).
    stalled_event jsonb,
    PRIMARY KEY (consumer, instance)
);

-- The event id of the message at next_offset - 1: on assignment the
-- consumer reads that offset again and compares, so positions that point
-- into another incarnation of a topic (recreated, or a broker that lost its
-- data) are recognised even when the cluster id cannot tell.
ALTER TABLE projector_offsets ADD COLUMN last_event_id uuid;

-- The saga's Kafka positions move to projector_offsets (consumer `saga`);
-- its old per-group table is no longer read.
DROP TABLE saga_offsets;

-- Verify runs started through the API (POST /v1/projectors/{name}/verify).
CREATE TABLE verify_jobs
(
    job_id      uuid        PRIMARY KEY,
    projector   text        NOT NULL,
    -- running | clean | differences | failed
    state       text        NOT NULL,
    requested_by text       NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    result      jsonb
);
-- One running verify per projector (a second start is a 409).
CREATE UNIQUE INDEX verify_jobs_running ON verify_jobs (projector) WHERE state = 'running';
