-- Order history's timeline keeps what lists and orders an order's events; the
-- event itself (aggregate, sequence, version, payload, metadata) is read from
-- `events` by `event_id` (unique index `events_event_id`) when an order's
-- detail is asked for, upcast exactly as the relay and replay upcast it. A
-- rebuild no longer copies ~1 KB of JSON per event into the read model.
--
-- Dropping columns rewrites nothing: existing rows keep their old bytes until
-- the table is rewritten, which the next `ordertrail-order-history rebuild`
-- does (its swap replaces the table by a fresh one).
ALTER TABLE order_timeline
    DROP COLUMN aggregate_type,
    DROP COLUMN aggregate_id,
    DROP COLUMN sequence,
    DROP COLUMN event_version,
    DROP COLUMN payload,
    DROP COLUMN metadata;
