//! The one place answers are cut to what the caller may see: every command
//! response (and the outcome inside a command's error details), every order
//! list and every order detail with its timeline pass through here, applying
//! the visibility table of `ordertrail_schemas::visibility`
//! (`docs/visibility.md`).

use ordertrail_commands::service::CommandOutcome;
use ordertrail_projections::queries::orders::{OrderDetail, OrderSummary};
use ordertrail_schemas::ActorRole;
use ordertrail_schemas::visibility::{
    Audience, redact_metadata, redact_payload, summary_field_visible,
};

use crate::auth::AuthUser;

/// The audience of a caller. The platform's own role is treated as ops.
pub fn audience(user: &AuthUser) -> Audience {
    match user.role {
        ActorRole::Customer => Audience::Customer,
        ActorRole::Restaurant => Audience::Restaurant,
        ActorRole::Rider => Audience::Rider,
        ActorRole::Ops | ActorRole::System => Audience::Ops,
        ActorRole::Admin => Audience::Admin,
        ActorRole::Auditor => Audience::Auditor,
    }
}

/// A command's outcome as `user` may see it.
pub fn outcome(user: &AuthUser, mut outcome: CommandOutcome) -> CommandOutcome {
    let audience = audience(user);
    for event in &mut outcome.events {
        redact_payload(audience, &event.event_type, &mut event.payload);
    }
    outcome
}

/// An order summary as `audience` may see it.
pub fn summary(audience: Audience, summary: &mut OrderSummary) {
    if !summary_field_visible(audience, "customer_id") {
        summary.customer_id = None;
    }
    if !summary_field_visible(audience, "commission_minor") {
        summary.commission_minor = None;
    }
    if !summary_field_visible(audience, "provider_fees_minor") {
        summary.provider_fees_minor = None;
    }
    if !summary_field_visible(audience, "payment_provider") {
        summary.payment_provider = None;
    }
}

/// An order detail as `user` may see it. `dropoff_code` is the code of the
/// order's delivery; it is kept only for the order's own customer (the
/// caller must already have been allowed to see the order).
pub fn detail(user: &AuthUser, detail: &mut OrderDetail, dropoff_code: impl FnOnce() -> String) {
    let audience = audience(user);
    let owner = detail.order.customer_id;
    summary(audience, &mut detail.order);
    for entry in &mut detail.timeline {
        redact_payload(audience, &entry.event_type, &mut entry.payload);
        redact_metadata(audience, &mut entry.metadata);
    }
    let own_order = owner.is_some() && user.customer_id().map(|c| c.0) == owner;
    detail.dropoff_code = (summary_field_visible(audience, "dropoff_code")
        && own_order
        && matches!(
            detail.order.status.as_str(),
            "accepted" | "ready_for_pickup" | "picked_up"
        ))
    .then(dropoff_code);
}
