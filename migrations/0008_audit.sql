-- Audit and reconciliation (issue 11).

-- One business flow's events (GET /v1/audit/correlations/{id}) in commit order.
-- `metadata` is the flat string map of EventMetadata::to_map.
CREATE INDEX events_correlation
    ON events ((metadata ->> 'correlation_id'), transaction_id, global_position);

-- THE SIMULATION'S SIDE, not ours: what the simulated payment provider did,
-- one row per successful provider operation, written by the provider wrapper
-- (commands/src/provider_ledger.rs) at the moment the provider answers, before
-- and independently of the event append. A real provider keeps this in its own
-- systems and exports it as a statement; `ordertrail-reconcile
-- provider-statement` exports this table in the same CSV format, and the
-- reconciliation compares that statement with the payment events.
CREATE TABLE simulated_provider_operations
(
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- authorization, capture, void or refund
    operation          text        NOT NULL,
    -- the authorization's reference (authorization, capture, void) or the refund's own
    provider_reference text        NOT NULL,
    payment_id         text        NOT NULL,
    amount_minor       bigint      NOT NULL,
    currency           char(3)     NOT NULL,
    fee_minor          bigint      NOT NULL,
    occurred_at        timestamptz NOT NULL
);
CREATE INDEX simulated_provider_operations_day ON simulated_provider_operations (occurred_at);
