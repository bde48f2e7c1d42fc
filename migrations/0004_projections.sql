-- Read models maintained by the projectors (projections/), and the projector
-- runtime's own bookkeeping. Every table here can be rebuilt from the log.

-------------------------------------------------------------------------------
-- Projector runtime
-------------------------------------------------------------------------------

-- Kafka position of every projector, per topic partition. Written in the same
-- transaction as the read-model changes of the batch it covers, so the stored
-- position and the read model never disagree. The consumer seeks here on
-- partition assignment and skips any message below next_offset.
CREATE TABLE projector_offsets
(
    projector        text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL CHECK (partition >= 0),
    -- The first offset not applied yet.
    next_offset      bigint      NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    -- The partition's high watermark as last seen by the consumer.
    high_watermark   bigint      NOT NULL DEFAULT 0,
    -- Events applied from this partition (duplicates skipped are not counted).
    events_applied   bigint      NOT NULL DEFAULT 0,
    -- recorded_at (store commit time) of the last event applied.
    last_recorded_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projector, topic, partition)
);

-- Per-aggregate sequence guard: the relay is at-least-once, so one event can
-- appear twice on a topic at different offsets. An event whose sequence is not
-- above the last applied one is a duplicate and has no effect; a gap stops the
-- projector.
CREATE TABLE projector_sequences
(
    projector      text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (projector, aggregate_type, aggregate_id)
);

-- Lag of every projector, summed over its partitions. A view rather than a
-- table written by every batch: two instances of one projector would otherwise
-- serialise their commits on a single status row.
CREATE VIEW projector_status AS
SELECT projector,
       count(*)::bigint                                         AS partitions,
       sum(events_applied)::bigint                              AS events_applied,
       sum(greatest(high_watermark - next_offset, 0))::bigint   AS events_behind,
       coalesce(max(CASE
                        WHEN high_watermark > next_offset AND last_recorded_at IS NOT NULL
                            THEN extract(epoch FROM now() - last_recorded_at)
                        ELSE 0 END), 0)::double precision       AS seconds_behind,
       max(last_recorded_at)                                    AS last_recorded_at,
       max(updated_at)                                          AS updated_at
FROM projector_offsets
GROUP BY projector;

-------------------------------------------------------------------------------
-- Order history (projector `order_history`: orders, payments, deliveries)
-- Each table is written by one topic's events only, so instances consuming
-- different partitions never write the same row.
-------------------------------------------------------------------------------

CREATE TABLE order_history
(
    order_id           uuid PRIMARY KEY,
    status             text        NOT NULL,
    customer_id        uuid        NOT NULL,
    restaurant_id      uuid        NOT NULL,
    restaurant_time_zone text      NOT NULL,
    payment_method     text        NOT NULL,
    item_count         integer     NOT NULL,
    currency           char(3)     NOT NULL,
    subtotal_minor     bigint      NOT NULL,
    delivery_fee_minor bigint      NOT NULL,
    service_fee_minor  bigint      NOT NULL,
    tax_minor          bigint      NOT NULL,
    tip_minor          bigint      NOT NULL,
    total_minor        bigint      NOT NULL,
    commission_minor   bigint      NOT NULL,
    payment_id         uuid,
    ready_by           timestamptz,
    pickup_rider_id    uuid,
    reason             text,
    placed_at          timestamptz NOT NULL,
    confirmed_at       timestamptz,
    accepted_at        timestamptz,
    rejected_at        timestamptz,
    ready_at           timestamptz,
    picked_up_at       timestamptz,
    delivered_at       timestamptz,
    cancelled_at       timestamptz,
    last_sequence      bigint      NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX order_history_placed ON order_history (placed_at DESC, order_id DESC);
CREATE INDEX order_history_restaurant ON order_history (restaurant_id, placed_at DESC, order_id DESC);
CREATE INDEX order_history_customer ON order_history (customer_id, placed_at DESC, order_id DESC);
CREATE INDEX order_history_status ON order_history (status, placed_at DESC, order_id DESC);

-- The order's payment (payments topic).
CREATE TABLE order_history_payments
(
    payment_id           uuid PRIMARY KEY,
    order_id             uuid        NOT NULL UNIQUE,
    status               text        NOT NULL,
    provider             text,
    currency             char(3)     NOT NULL,
    authorized_minor     bigint      NOT NULL DEFAULT 0,
    captured_minor       bigint      NOT NULL DEFAULT 0,
    refunded_minor       bigint      NOT NULL DEFAULT 0,
    cash_collected_minor bigint      NOT NULL DEFAULT 0,
    provider_fees_minor  bigint      NOT NULL DEFAULT 0,
    authorized_at        timestamptz,
    declined_at          timestamptz,
    captured_at          timestamptz,
    voided_at            timestamptz,
    last_refunded_at     timestamptz,
    cash_collected_at    timestamptz,
    updated_at           timestamptz NOT NULL
);

-- The order's delivery (deliveries topic).
CREATE TABLE order_history_deliveries
(
    delivery_id  uuid PRIMARY KEY,
    order_id     uuid        NOT NULL UNIQUE,
    status       text        NOT NULL,
    rider_id     uuid,
    requested_at timestamptz NOT NULL,
    assigned_at  timestamptz,
    picked_up_at timestamptz,
    completed_at timestamptz,
    failed_at    timestamptz,
    cancelled_at timestamptz,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX order_history_deliveries_rider ON order_history_deliveries (rider_id);

-- Every event of an order, its payment and its delivery, with metadata.
CREATE TABLE order_timeline
(
    event_id        uuid PRIMARY KEY,
    order_id        uuid        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    global_position bigint      NOT NULL,
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX order_timeline_order ON order_timeline (order_id, recorded_at, global_position);

-------------------------------------------------------------------------------
-- Rider ETAs (projector `rider_etas`: deliveries)
-------------------------------------------------------------------------------

CREATE TABLE rider_etas
(
    delivery_id           uuid PRIMARY KEY,
    order_id              uuid             NOT NULL,
    restaurant_id         uuid             NOT NULL,
    status                text             NOT NULL,
    active                boolean          NOT NULL,
    rider_id              uuid,
    pickup_lat            double precision NOT NULL,
    pickup_lon            double precision NOT NULL,
    dropoff_lat           double precision NOT NULL,
    dropoff_lon           double precision NOT NULL,
    ready_by              timestamptz,
    requested_at          timestamptz      NOT NULL,
    assigned_at           timestamptz,
    rider_lat             double precision,
    rider_lon             double precision,
    rider_reported_at     timestamptz,
    -- The rider's recent fixes on this delivery, oldest first: [{lat,lon,at}].
    recent_reports        jsonb            NOT NULL DEFAULT '[]',
    speed_mps             double precision NOT NULL,
    speed_from_reports    boolean          NOT NULL,
    distance_to_pickup_m  double precision,
    distance_to_dropoff_m double precision,
    pickup_eta            timestamptz,
    dropoff_eta           timestamptz,
    -- Predictions kept for the accuracy report: pickup ETA at the rider's first
    -- fix after assignment, drop-off ETA at pickup.
    predicted_pickup_at   timestamptz,
    predicted_dropoff_at  timestamptz,
    picked_up_at          timestamptz,
    completed_at          timestamptz,
    ended_at              timestamptz,
    updated_at            timestamptz      NOT NULL
);
CREATE INDEX rider_etas_active ON rider_etas (delivery_id) WHERE active;
CREATE INDEX rider_etas_rider ON rider_etas (rider_id) WHERE active;
CREATE INDEX rider_etas_order ON rider_etas (order_id);
CREATE INDEX rider_etas_completed ON rider_etas (completed_at) WHERE completed_at IS NOT NULL;

-------------------------------------------------------------------------------
-- Settlements (projector `settlements`: orders, payments)
-- See projections/src/settlements.rs for which event puts which figure in
-- which day, and the net formula.
-------------------------------------------------------------------------------

-- What the settlement projector knows of an order (from OrderPlaced).
CREATE TABLE settlement_orders
(
    order_id           uuid PRIMARY KEY,
    restaurant_id      uuid    NOT NULL,
    time_zone          text    NOT NULL,
    currency           char(3) NOT NULL,
    subtotal_minor     bigint  NOT NULL,
    tax_minor          bigint  NOT NULL,
    delivery_fee_minor bigint  NOT NULL,
    service_fee_minor  bigint  NOT NULL,
    tip_minor          bigint  NOT NULL,
    commission_minor   bigint  NOT NULL
);

-- Payment → order, restaurant and provider (from PaymentAuthorized,
-- PaymentDeclined, CashCollected); later payment events carry only the id.
CREATE TABLE settlement_payments
(
    payment_id    uuid PRIMARY KEY,
    order_id      uuid    NOT NULL,
    restaurant_id uuid    NOT NULL,
    -- NULL for cash.
    provider      text,
    currency      char(3) NOT NULL
);

-- The settlement ledger: one row per event that moves a restaurant figure.
-- business_day is the event time's date in the restaurant's time zone; it is
-- NULL while the order's OrderPlaced (on another topic) has not been seen, and
-- the entry is added to its day when it is.
CREATE TABLE settlement_entries
(
    event_id             uuid PRIMARY KEY,
    event_type           text        NOT NULL,
    restaurant_id        uuid        NOT NULL,
    order_id             uuid        NOT NULL,
    occurred_at          timestamptz NOT NULL,
    business_day         date,
    currency             char(3)     NOT NULL,
    orders               bigint      NOT NULL DEFAULT 0,
    gross_sales_minor    bigint      NOT NULL DEFAULT 0,
    tax_minor            bigint      NOT NULL DEFAULT 0,
    delivery_fees_minor  bigint      NOT NULL DEFAULT 0,
    service_fees_minor   bigint      NOT NULL DEFAULT 0,
    tips_minor           bigint      NOT NULL DEFAULT 0,
    commission_minor     bigint      NOT NULL DEFAULT 0,
    provider_fees_minor  bigint      NOT NULL DEFAULT 0,
    refunds_minor        bigint      NOT NULL DEFAULT 0,
    cash_collected_minor bigint      NOT NULL DEFAULT 0
);
CREATE INDEX settlement_entries_pending ON settlement_entries (order_id) WHERE business_day IS NULL;
CREATE INDEX settlement_entries_restaurant_day ON settlement_entries (restaurant_id, business_day);

CREATE TABLE restaurant_settlement_days
(
    restaurant_id        uuid    NOT NULL,
    business_day         date    NOT NULL,
    currency             char(3) NOT NULL,
    orders               bigint  NOT NULL DEFAULT 0,
    gross_sales_minor    bigint  NOT NULL DEFAULT 0,
    tax_minor            bigint  NOT NULL DEFAULT 0,
    delivery_fees_minor  bigint  NOT NULL DEFAULT 0,
    service_fees_minor   bigint  NOT NULL DEFAULT 0,
    tips_minor           bigint  NOT NULL DEFAULT 0,
    commission_minor     bigint  NOT NULL DEFAULT 0,
    provider_fees_minor  bigint  NOT NULL DEFAULT 0,
    refunds_minor        bigint  NOT NULL DEFAULT 0,
    cash_collected_minor bigint  NOT NULL DEFAULT 0,
    -- gross_sales + tax - commission - provider_fees - refunds
    net_payable_minor    bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (restaurant_id, business_day, currency)
);
CREATE INDEX restaurant_settlement_days_day ON restaurant_settlement_days (business_day);

-- Per payment provider per UTC day (providers settle in UTC).
CREATE TABLE provider_settlement_days
(
    provider         text    NOT NULL,
    day              date    NOT NULL,
    currency         char(3) NOT NULL,
    authorized_minor bigint  NOT NULL DEFAULT 0,
    captured_minor   bigint  NOT NULL DEFAULT 0,
    voided_minor     bigint  NOT NULL DEFAULT 0,
    refunded_minor   bigint  NOT NULL DEFAULT 0,
    fees_minor       bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, day, currency)
);
