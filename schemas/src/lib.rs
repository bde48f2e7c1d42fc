//! Ordertrail's wire contract.
//!
//! Everything that crosses a process boundary as data lives here: the event
//! payload types written by the command side and read by the relay, the saga and
//! the projectors; the value types they carry (`Money`, ids, `GeoPoint`); the
//! Kafka envelope and topic names; and the JSON Schema documents generated from
//! these types (checked in under `schemas/json/`).
//!
//! May depend on serde, schemars, uuid, chrono, the `cqrs-es` event trait and
//! sha2/hmac/hex (the one-way forms secrets take on the wire, [`privacy`]).
//! Must never depend on `domain`, `commands` or `projections`: readers that only
//! know this crate can decode every event ever written.

#![warn(missing_docs)]

pub mod envelope;
pub mod error_kind;
pub mod events;
pub mod geo;
pub mod ids;
pub mod json_schema;
pub mod metadata;
pub mod money;
pub mod privacy;
pub mod status;
pub mod text;
pub mod topics;
pub mod upcasters;
pub mod visibility;

pub use envelope::EventEnvelope;
pub use error_kind::{DomainError, ErrorKind};
pub use events::{AggregateKind, DeliveryEvent, OrderEvent, PaymentEvent};
pub use geo::GeoPoint;
pub use ids::*;
pub use metadata::{Actor, ActorRole, EventMetadata};
pub use money::{Currency, Money, MoneyError};
pub use status::{DeliveryStatus, OrderStatus, PaymentStatus};
