-- Retention for the bookkeeping tables that grow with traffic (issue 16,
-- commands/src/retention.rs). Each pruning query deletes in small batches
-- (`ctid IN (SELECT ... LIMIT n)`) and finds its candidates through these
-- indexes instead of scanning the table.

-- Idempotency-Key rows older than the idempotency window.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Command-log rows older than the command-log window (and behind the saga).
CREATE INDEX command_log_recorded ON command_log (recorded_at);

-- Fired timers older than the timer window. Unfired timers are never pruned
-- and keep their own partial index (saga_timers_due).
CREATE INDEX saga_timers_fired ON saga_timers (fired_at) WHERE fired_at IS NOT NULL;

-- The sequence guards (projector_sequences) are walked by their primary key
-- and checked against `events` by its primary key: no index needed.
