//! A backlog of realistic order lifecycles as event envelopes, for the
//! benchmarks that feed projectors from Kafka or from the event store: each
//! order is placed, authorized, confirmed, accepted, delivered with location
//! fixes and captured.

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use uuid::Uuid;

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

/// A time-ordered id (UUIDv7) of the moment `at`, as the command path gives
/// events, new flows and new orders: a backlog of weeks holds ids of weeks.
pub fn id_at(at: DateTime<Utc>) -> Uuid {
    let nanos = at.timestamp_nanos_opt().unwrap_or_default().max(0) as u64;
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        nanos / 1_000_000_000,
        (nanos % 1_000_000_000) as u32,
    ))
}

fn metadata(at: DateTime<Utc>) -> EventMetadata {
    EventMetadata {
        command_id: id_at(at),
        correlation_id: id_at(at),
        causation_id: id_at(at),
        actor: Actor {
            subject: "bench".into(),
            role: ActorRole::System,
        },
        request_id: "bench".into(),
    }
}

/// Envelopes of realistic order lifecycles, numbered as the store would.
#[derive(Debug, Default)]
pub struct Backlog {
    /// The envelopes, in store order.
    pub envelopes: Vec<EventEnvelope>,
    /// The last global position given.
    pub position: i64,
}

impl Backlog {
    fn push<E: serde::Serialize>(
        &mut self,
        kind: AggregateKind,
        id: Uuid,
        seq: &mut i64,
        (name, version): (&str, &str),
        event: &E,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        *seq += 1;
        self.position += 1;
        self.envelopes.push(EventEnvelope {
            event_id: id_at(at),
            aggregate_type: kind,
            aggregate_id: id.to_string(),
            sequence: *seq,
            global_position: self.position,
            event_type: name.into(),
            event_version: version.into(),
            payload: serde_json::to_value(event)?,
            metadata: metadata(at),
            recorded_at: at,
        });
        Ok(())
    }

    fn order(
        &mut self,
        id: OrderId,
        seq: &mut i64,
        e: impl Into<OrderEvent>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let e: OrderEvent = e.into();
        self.push(
            AggregateKind::Order,
            id.0,
            seq,
            (e.type_name(), e.version()),
            &e,
            at,
        )
    }

    /// Append a payment event (e.g. a refund after the lifecycle).
    pub fn payment(
        &mut self,
        id: PaymentId,
        seq: &mut i64,
        e: impl Into<PaymentEvent>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let e: PaymentEvent = e.into();
        self.push(
            AggregateKind::Payment,
            id.0,
            seq,
            (e.type_name(), e.version()),
            &e,
            at,
        )
    }

    fn delivery(
        &mut self,
        id: DeliveryId,
        seq: &mut i64,
        e: impl Into<DeliveryEvent>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let e: DeliveryEvent = e.into();
        self.push(
            AggregateKind::Delivery,
            id.0,
            seq,
            (e.type_name(), e.version()),
            &e,
            at,
        )
    }
}

/// One delivered card order's ids, amounts and times: what the benchmarks'
/// days vary.
#[derive(Debug, Clone)]
pub struct CardOrder {
    /// The order (its payment and delivery ids follow from it).
    pub order: OrderId,
    /// Where it is placed.
    pub restaurant: RestaurantId,
    /// When it is placed; the rest of its life follows within 30 minutes.
    pub placed: DateTime<Utc>,
    /// The one line's name.
    pub item: &'static str,
    /// The price, minor units (the total is the sum of the parts).
    pub subtotal: i64,
    /// Delivery fee.
    pub delivery_fee: i64,
    /// Service fee.
    pub service_fee: i64,
    /// Tax.
    pub tax: i64,
    /// Tip.
    pub tip: i64,
    /// The platform's commission.
    pub commission: i64,
    /// The provider's reference for the authorization.
    pub authorization_reference: String,
    /// The provider's fee for the authorization.
    pub authorization_fee: i64,
    /// The provider's fee for the capture.
    pub capture_fee: i64,
    /// Rider location fixes between assignment and pick-up.
    pub reports: usize,
}

impl CardOrder {
    /// What the customer pays.
    pub fn total(&self) -> i64 {
        self.subtotal + self.delivery_fee + self.service_fee + self.tax + self.tip
    }

    /// When it is delivered and its payment captured.
    pub fn delivered_at(&self) -> DateTime<Utc> {
        self.placed + chrono::Duration::minutes(30)
    }
}

/// One delivered card order with `reports` location fixes, the `i`-th of a
/// backlog that places one every 3 s.
pub fn order(
    b: &mut Backlog,
    i: usize,
    reports: usize,
    restaurants: &[RestaurantId],
) -> anyhow::Result<()> {
    let start = Utc
        .with_ymd_and_hms(2025, 1, 1, 8, 0, 0)
        .single()
        .context("start time")?;
    let placed = start + chrono::Duration::seconds(i as i64 * 3);
    card_order(
        b,
        &CardOrder {
            order: OrderId(id_at(placed)),
            restaurant: restaurants[i % restaurants.len()],
            placed,
            item: "Pizza",
            subtotal: 2_899,
            delivery_fee: 319,
            service_fee: 145,
            tax: 203,
            tip: 150,
            commission: 435,
            authorization_reference: "auth".into(),
            authorization_fee: 25,
            capture_fee: 35,
            reports,
        },
    )
    .map(drop)
}

/// Every event of `o`'s life: placed, authorized, confirmed, accepted;
/// delivery requested, assigned, located `reports` times, picked up,
/// completed; order delivered, payment captured. Returns the payment's
/// last sequence (for events after the lifecycle).
pub fn card_order(b: &mut Backlog, o: &CardOrder) -> anyhow::Result<i64> {
    let m = chrono::Duration::minutes;
    let (order, restaurant, placed) = (o.order, o.restaurant, o.placed);
    let pay = PaymentId::for_order(order);
    let del = DeliveryId::for_order(order);
    let rider = RiderId::new_random();
    let pickup = GeoPoint {
        lat: 52.52,
        lon: 13.405,
    };
    let dropoff = GeoPoint {
        lat: 52.53,
        lon: 13.43,
    };
    let total = o.total();
    let (mut so, mut sp, mut sd) = (0, 0, 0);
    b.order(
        order,
        &mut so,
        OrderPlaced {
            order_id: order,
            customer_id: CustomerId::new_random(),
            restaurant_id: restaurant,
            restaurant_location: pickup,
            restaurant_time_zone: "Europe/Berlin".into(),
            lines: vec![OrderLine {
                menu_item_id: MenuItemId(Uuid::from_u128(1)),
                name: o.item.into(),
                unit_price: eur(o.subtotal),
                quantity: 1,
                line_total: eur(o.subtotal),
            }],
            delivery_address: DeliveryAddress {
                street: "Karl-Marx-Allee 1".into(),
                city: "Berlin".into(),
                postal_code: "10178".into(),
                location: dropoff,
            },
            payment_method: PaymentMethod::Card {
                payment_method_ref: "pm_0123456789abcdef0123456789abcdef".into(),
            },
            price: PriceBreakdown {
                subtotal: eur(o.subtotal),
                delivery_fee: eur(o.delivery_fee),
                service_fee: eur(o.service_fee),
                tax: eur(o.tax),
                tip: eur(o.tip),
                total: eur(total),
                commission: eur(o.commission),
            },
            placed_at: placed,
        },
        placed,
    )?;
    b.payment(
        pay,
        &mut sp,
        PaymentAuthorized {
            payment_id: pay,
            order_id: order,
            restaurant_id: restaurant,
            amount: eur(total),
            provider: "simulated".into(),
            provider_reference: o.authorization_reference.clone(),
            fee: eur(o.authorization_fee),
            authorized_at: placed,
        },
        placed,
    )?;
    b.order(
        order,
        &mut so,
        OrderConfirmed {
            payment_id: Some(pay),
            confirmed_at: placed,
        },
        placed,
    )?;
    b.order(
        order,
        &mut so,
        OrderAccepted {
            preparation_minutes: 15,
            ready_by: placed + m(15),
            accepted_at: placed + m(1),
        },
        placed + m(1),
    )?;
    b.delivery(
        del,
        &mut sd,
        DeliveryRequested {
            delivery_id: del,
            order_id: order,
            restaurant_id: restaurant,
            pickup,
            dropoff,
            dropoff_code_hash: format!("hmac-sha256:{}", "0".repeat(64)),
            ready_by: Some(placed + m(15)),
            requested_at: placed + m(1),
        },
        placed + m(1),
    )?;
    b.delivery(
        del,
        &mut sd,
        RiderAssigned {
            rider_id: rider,
            assigned_at: placed + m(2),
        },
        placed + m(2),
    )?;
    for r in 0..o.reports {
        let at = placed + m(3) + chrono::Duration::seconds(r as i64 * 15);
        let location = GeoPoint {
            lat: 52.50 + r as f64 * 0.001,
            lon: 13.405,
        };
        b.delivery(
            del,
            &mut sd,
            RiderLocationReported {
                rider_id: rider,
                location,
                reported_at: at,
                accuracy_m: Some(8),
            },
            at,
        )?;
    }
    b.delivery(
        del,
        &mut sd,
        PickupConfirmed {
            rider_id: rider,
            picked_up_at: placed + m(16),
        },
        placed + m(16),
    )?;
    b.order(
        order,
        &mut so,
        OrderPickedUp {
            rider_id: rider,
            picked_up_at: placed + m(16),
        },
        placed + m(16),
    )?;
    b.delivery(
        del,
        &mut sd,
        DeliveryCompleted {
            rider_id: rider,
            completed_at: placed + m(30),
        },
        placed + m(30),
    )?;
    b.order(
        order,
        &mut so,
        OrderDelivered {
            delivered_at: placed + m(30),
        },
        placed + m(30),
    )?;
    b.payment(
        pay,
        &mut sp,
        PaymentCaptured {
            amount: eur(total),
            fee: eur(o.capture_fee),
            captured_at: placed + m(30),
            override_reason: None,
        },
        placed + m(30),
    )?;
    Ok(sp)
}

/// Write envelopes into `events` as stored rows (their own event ids and
/// times), 5,000 per statement, in order.
pub async fn load(pool: &sqlx::PgPool, envelopes: &[EventEnvelope]) -> anyhow::Result<()> {
    for chunk in envelopes.chunks(5_000) {
        let mut types = Vec::with_capacity(chunk.len());
        let mut ids = Vec::with_capacity(chunk.len());
        let mut seqs = Vec::with_capacity(chunk.len());
        let mut names = Vec::with_capacity(chunk.len());
        let mut versions = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        let mut metadata = Vec::with_capacity(chunk.len());
        let mut event_ids = Vec::with_capacity(chunk.len());
        let mut recorded = Vec::with_capacity(chunk.len());
        for e in chunk {
            types.push(e.aggregate_type.as_str());
            ids.push(e.aggregate_id.as_str());
            seqs.push(e.sequence);
            names.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(e.payload.clone());
            metadata.push(serde_json::to_value(e.metadata.to_map())?);
            event_ids.push(e.event_id);
            recorded.push(e.recorded_at);
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, event_id, recorded_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::jsonb[], $7::jsonb[], $8::uuid[], $9::timestamptz[])",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&seqs)
        .bind(&names)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(&event_ids)
        .bind(&recorded)
        .execute(pool)
        .await
        .context("insert events")?;
    }
    Ok(())
}
