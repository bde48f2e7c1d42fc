//! Metadata carried by every stored event (DESIGN.md, "Event store").

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{CustomerId, RestaurantId, RiderId};

/// Roles a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    /// A customer ordering food.
    Customer,
    /// A restaurant preparing orders.
    Restaurant,
    /// A rider delivering orders.
    Rider,
    /// Operations staff handling orders, payments and deliveries.
    Ops,
    /// Administrators: everything ops may do, plus reference data.
    Admin,
    /// Read-only: may read every query and audit route, may command nothing.
    Auditor,
    /// The platform itself (saga, timeouts).
    System,
}

impl ActorRole {
    /// The role's wire name (`customer`, `rider`, ...), as in tokens and metadata.
    pub fn as_str(&self) -> &'static str {
        match self {
            ActorRole::Customer => "customer",
            ActorRole::Restaurant => "restaurant",
            ActorRole::Rider => "rider",
            ActorRole::Ops => "ops",
            ActorRole::Admin => "admin",
            ActorRole::Auditor => "auditor",
            ActorRole::System => "system",
        }
    }

    /// The role named by its wire name; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "customer" => ActorRole::Customer,
            "restaurant" => ActorRole::Restaurant,
            "rider" => ActorRole::Rider,
            "ops" => ActorRole::Ops,
            "admin" => ActorRole::Admin,
            "auditor" => ActorRole::Auditor,
            "system" => ActorRole::System,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ActorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who issued a command: the token's subject and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// The token's subject: the customer, restaurant or rider id, or a staff login.
    pub subject: String,
    /// The role the token grants.
    pub role: ActorRole,
}

impl Actor {
    /// Ops and admin: staff who may act on any order, payment or delivery.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, ActorRole::Ops | ActorRole::Admin)
    }

    fn subject_uuid(&self, role: ActorRole) -> Option<Uuid> {
        (self.role == role)
            .then(|| Uuid::parse_str(&self.subject).ok())
            .flatten()
    }

    /// The customer this actor is, if it is a customer.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.subject_uuid(ActorRole::Customer).map(CustomerId)
    }

    /// The restaurant this actor speaks for, if it is a restaurant.
    pub fn restaurant_id(&self) -> Option<RestaurantId> {
        self.subject_uuid(ActorRole::Restaurant).map(RestaurantId)
    }

    /// The rider this actor is, if it is a rider.
    pub fn rider_id(&self) -> Option<RiderId> {
        self.subject_uuid(ActorRole::Rider).map(RiderId)
    }
}

/// Metadata stored with every event of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetadata {
    /// Id of the command that appended the event (deterministic for retries).
    pub command_id: Uuid,
    /// Id shared by everything one business flow caused (e.g. one order).
    pub correlation_id: Uuid,
    /// Id of the message (event or request) that caused the command.
    pub causation_id: Uuid,
    /// Who issued the command that appended the event.
    pub actor: Actor,
    /// The HTTP request id, or the saga's own id for commands it sends.
    pub request_id: String,
}

/// Error reading metadata back from the store's string map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event metadata field {field} is missing or invalid")]
pub struct MetadataError {
    /// The metadata key that was missing or could not be parsed.
    pub field: &'static str,
}

impl EventMetadata {
    /// Store metadata key of [`EventMetadata::command_id`].
    pub const COMMAND_ID: &'static str = "command_id";
    /// Store metadata key of [`EventMetadata::correlation_id`].
    pub const CORRELATION_ID: &'static str = "correlation_id";
    /// Store metadata key of [`EventMetadata::causation_id`].
    pub const CAUSATION_ID: &'static str = "causation_id";
    /// Store metadata key of the actor's subject.
    pub const ACTOR_SUBJECT: &'static str = "actor_subject";
    /// Store metadata key of the actor's role.
    pub const ACTOR_ROLE: &'static str = "actor_role";
    /// Store metadata key of [`EventMetadata::request_id`].
    pub const REQUEST_ID: &'static str = "request_id";

    /// The flat string map cqrs-es stores in the `metadata` column.
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (Self::COMMAND_ID.to_owned(), self.command_id.to_string()),
            (
                Self::CORRELATION_ID.to_owned(),
                self.correlation_id.to_string(),
            ),
            (Self::CAUSATION_ID.to_owned(), self.causation_id.to_string()),
            (Self::ACTOR_SUBJECT.to_owned(), self.actor.subject.clone()),
            (
                Self::ACTOR_ROLE.to_owned(),
                self.actor.role.as_str().to_owned(),
            ),
            (Self::REQUEST_ID.to_owned(), self.request_id.clone()),
        ])
    }

    /// Read metadata back from the stored map.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let uuid = |field: &'static str| {
            map.get(field)
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or(MetadataError { field })
        };
        let text = |field: &'static str| map.get(field).cloned().ok_or(MetadataError { field });
        Ok(Self {
            command_id: uuid(Self::COMMAND_ID)?,
            correlation_id: uuid(Self::CORRELATION_ID)?,
            causation_id: uuid(Self::CAUSATION_ID)?,
            actor: Actor {
                subject: text(Self::ACTOR_SUBJECT)?,
                role: map
                    .get(Self::ACTOR_ROLE)
                    .and_then(|r| ActorRole::parse(r))
                    .ok_or(MetadataError {
                        field: Self::ACTOR_ROLE,
                    })?,
            },
            request_id: text(Self::REQUEST_ID)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_the_store_map() {
        let m = EventMetadata {
            command_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            causation_id: Uuid::new_v4(),
            actor: Actor {
                subject: "abc".into(),
                role: ActorRole::Rider,
            },
            request_id: "req-1".into(),
        };
        assert_eq!(EventMetadata::from_map(&m.to_map()), Ok(m.clone()));
        let mut broken = m.to_map();
        broken.remove("causation_id");
        assert_eq!(
            EventMetadata::from_map(&broken),
            Err(MetadataError {
                field: "causation_id"
            })
        );
    }
}
