-- Saga and money under faults (issue 12): timers claimed in short
-- transactions, stored per-order retries of provider calls, timeouts after
-- assignment, and the simulated provider's idempotency keys.

-- Timers are claimed with a lease in one short statement, fired outside any
-- transaction, then marked fired. A claim whose holder died runs out and the
-- timer is claimed again (its commands derive their ids from the timer or its
-- origin, so firing twice acts once).
ALTER TABLE saga_timers
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN claimed_by    text,
    -- What the commands a timer sends derive their ids from, when not the
    -- timer itself: a retry of a provider call repeats the first attempt's
    -- command id, so the provider sees the same idempotency key (an attempt
    -- whose answer was lost is never performed twice). For pickup and
    -- completion timeouts: the RiderAssigned event they watch.
    ADD COLUMN origin        uuid;

ALTER TABLE saga_timers DROP CONSTRAINT IF EXISTS saga_timers_kind_check;
ALTER TABLE saga_timers ADD CONSTRAINT saga_timers_kind_check CHECK (kind IN (
    'authorize_retry',    -- authorize a card payment again after the provider was unavailable
    'accept_timeout',     -- cancel a confirmed order the restaurant did not accept in time
    'assign_timeout',     -- flag a delivery no rider took in time (again after a rider is lost)
    'capture_retry',      -- capture again after a PaymentCaptureFailed
    'release_retry',      -- void or refund again after the provider was unavailable
    'pickup_timeout',     -- take a delivery from a rider who did not pick it up in time
    'completion_timeout'  -- flag a delivery picked up but not completed in time
));
-- Timers with an origin are told apart by it (a delivery assigned twice has
-- two pickup timeouts); timer_id stays the key.
ALTER TABLE saga_timers DROP CONSTRAINT IF EXISTS saga_timers_kind_aggregate_id_attempt_key;
CREATE UNIQUE INDEX saga_timers_kind_aggregate_attempt_origin
    ON saga_timers (kind, aggregate_id, attempt, coalesce(origin, '00000000-0000-0000-0000-000000000000'));

DROP INDEX IF EXISTS saga_timers_due;
CREATE INDEX saga_timers_due ON saga_timers (due_at) WHERE fired_at IS NULL;

-- THE SIMULATION'S SIDE: the idempotency key each operation was asked with and
-- a fingerprint of its parameters, so the simulated provider answers a
-- repeated key with the first answer (no second charge) and refuses the same
-- key with other parameters, as real providers do.
ALTER TABLE simulated_provider_operations
    ADD COLUMN idempotency_key text,
    ADD COLUMN request_fingerprint text;
CREATE UNIQUE INDEX simulated_provider_operations_idempotency
    ON simulated_provider_operations (idempotency_key) WHERE idempotency_key IS NOT NULL;
