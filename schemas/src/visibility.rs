//! What each audience may see of an order, its payment and its delivery: the
//! one field-level visibility table ([`RULES`]), applied wherever answers are
//! built (order timelines, order lists and details, command responses) by
//! [`redact_payload`], [`redact_metadata`] and [`redact_summary`].
//!
//! A field no rule names is visible to everyone who may see the order at all
//! (which orders a caller may see is decided elsewhere: a customer their own,
//! a restaurant its own, a rider those assigned to them). Secrets are never in
//! a payload written today (see [`crate::privacy`]); the rows for
//! `card_token` and `dropoff_code` remove them from payloads stored before.
//! `docs/visibility.md` is this table rendered by [`markdown_table`]; a test
//! fails when they differ.

use serde_json::Value;

/// Who is asking, as far as visibility goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The customer who placed the order.
    Customer,
    /// The restaurant the order is from.
    Restaurant,
    /// The rider assigned to the delivery.
    Rider,
    /// Operations staff.
    Ops,
    /// Read-only staff checking the books.
    Auditor,
    /// Administrators.
    Admin,
}

impl Audience {
    /// Every audience, in the column order of [`FieldRule::visible_to`].
    pub const ALL: [Audience; 6] = [
        Audience::Customer,
        Audience::Restaurant,
        Audience::Rider,
        Audience::Ops,
        Audience::Auditor,
        Audience::Admin,
    ];

    /// The audience's place in [`Audience::ALL`] (and its column in the
    /// table).
    pub fn index(self) -> usize {
        match self {
            Audience::Customer => 0,
            Audience::Restaurant => 1,
            Audience::Rider => 2,
            Audience::Ops => 3,
            Audience::Auditor => 4,
            Audience::Admin => 5,
        }
    }

    /// The audience's name, as in the rendered table.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Customer => "customer",
            Audience::Restaurant => "restaurant",
            Audience::Rider => "rider",
            Audience::Ops => "ops",
            Audience::Auditor => "auditor",
            Audience::Admin => "admin",
        }
    }
}

/// Where a field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the payload of these event types.
    Events(&'static [&'static str]),
    /// In every event's metadata (timeline entries).
    Metadata,
    /// In the order summary of lists and details (`OrderSummary`).
    Summary,
}

/// One row of the table: a field (dot path) and who sees it, in the order of
/// [`Audience::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRule {
    /// Order, payment or delivery (documentation).
    pub area: &'static str,
    /// Where the field lives: which payloads, metadata or the summary.
    pub scope: Scope,
    /// Dot path of the field within its scope, e.g. `payment_method.card_token`.
    pub path: &'static str,
    /// Whether each audience of [`Audience::ALL`] sees the field, in that order.
    pub visible_to: [bool; 6],
    /// Why (documentation).
    pub why: &'static str,
}

const Y: bool = true;
const N: bool = false;
const NOBODY: [bool; 6] = [N, N, N, N, N, N];
const STAFF: [bool; 6] = [N, N, N, Y, Y, Y];

const PAYMENT_EVENTS: &[&str] = &[
    "PaymentAuthorized",
    "PaymentDeclined",
    "PaymentCaptured",
    "PaymentVoided",
    "PaymentRefunded",
    "PaymentCaptureFailed",
    "PaymentVoidFailed",
    "PaymentRefundFailed",
];

/// The provider's answers that name the provider: the authorization's and
/// every failed call's.
const PROVIDER_CALLS: &[&str] = &[
    "PaymentAuthorized",
    "PaymentDeclined",
    "PaymentCaptureFailed",
    "PaymentVoidFailed",
    "PaymentRefundFailed",
];

/// The refusals that carry the provider's decline code.
const PAYMENT_REFUSALS: &[&str] = &[
    "PaymentDeclined",
    "PaymentCaptureFailed",
    "PaymentVoidFailed",
    "PaymentRefundFailed",
];

/// The failed provider calls after authorization: what they record about
/// the provider and the call is staff-only, like the capture's.
const PAYMENT_FAILURES: &[&str] = &[
    "PaymentCaptureFailed",
    "PaymentVoidFailed",
    "PaymentRefundFailed",
];

/// One [`FieldRule`] per row: `area, scope, path, visible_to, why;`.
macro_rules! field_rules {
    ($($area:literal, $scope:expr, $path:literal, $visible_to:expr, $why:literal;)+) => {
        &[$(FieldRule {
            area: $area,
            scope: $scope,
            path: $path,
            visible_to: $visible_to,
            why: $why,
        },)+]
    };
}

use Scope::{Events, Metadata, Summary};

/// The visibility table. Columns of `visible_to`: customer, restaurant,
/// rider, ops, auditor, admin.
pub const RULES: &[FieldRule] = field_rules! {
    "order", Events(&["OrderPlaced"]), "customer_id", [Y, Y, N, Y, Y, Y],
        "riders deliver to an address, not to an account";
    "order", Summary, "customer_id", [Y, Y, N, Y, Y, Y],
        "riders deliver to an address, not to an account";
    "order", Events(&["OrderPlaced"]), "delivery_address", [Y, N, Y, Y, N, Y],
        "personal data: the restaurant and auditors need no address";
    "order", Events(&["OrderPlaced"]), "price.commission", [N, Y, N, Y, Y, Y],
        "between the platform and the restaurant";
    "order", Summary, "commission_minor", [N, Y, N, Y, Y, Y],
        "between the platform and the restaurant";
    "payment", Events(&["OrderPlaced"]), "payment_method.payment_method_ref", [Y, N, N, Y, Y, Y],
        "which card paid is the customer's business (kind card/cash is visible to all)";
    "payment", Events(&["OrderPlaced"]), "payment_method.card_token", NOBODY,
        "secret; only in events stored before OrderPlaced v2";
    "payment", Events(PAYMENT_EVENTS), "provider_reference", STAFF,
        "the provider's handle on the card operation";
    "payment", Events(PROVIDER_CALLS), "provider", STAFF,
        "internal";
    "payment", Summary, "payment_provider", STAFF,
        "internal";
    "payment", Events(PAYMENT_EVENTS), "fee", [N, Y, N, Y, Y, Y],
        "provider fees are settled with the restaurant";
    "payment", Summary, "provider_fees_minor", [N, Y, N, Y, Y, Y],
        "provider fees are settled with the restaurant";
    "payment", Events(PAYMENT_REFUSALS), "decline_code", [Y, N, N, Y, Y, Y],
        "about the customer's card";
    "payment", Events(PAYMENT_FAILURES), "idempotency_key", STAFF,
        "internal: the key of our call to the provider";
    "delivery", Events(&["DeliveryRequested"]), "dropoff_code_hash", STAFF,
        "a keyed hash of the code; the customer sees the code itself in `dropoff_code` of their order";
    "delivery", Events(&["DeliveryRequested"]), "dropoff_code", NOBODY,
        "secret; only in events stored before DeliveryRequested v2";
    "delivery", Summary, "dropoff_code", [Y, N, N, N, N, N],
        "the customer tells it to the rider at the door; nobody else may know it";
    "delivery", Events(&["DeliveryRequested"]), "dropoff", [Y, N, Y, Y, N, Y],
        "the customer's location (personal data)";
    "all", Metadata, "actor.subject", STAFF,
        "who did it: account ids of other parties";
    "all", Metadata, "request_id", STAFF,
        "internal tracing";
};

fn visible(rule: &FieldRule, audience: Audience) -> bool {
    rule.visible_to[audience.index()]
}

/// Remove `path` (dot-separated) from `value`.
fn remove_path(value: &mut Value, path: &str) {
    let mut parts = path.split('.').peekable();
    let mut here = value;
    while let Some(part) = parts.next() {
        let Value::Object(map) = here else { return };
        if parts.peek().is_none() {
            map.remove(part);
            return;
        }
        match map.get_mut(part) {
            Some(next) => here = next,
            None => return,
        }
    }
}

fn redact(scope_matches: impl Fn(&Scope) -> bool, audience: Audience, value: &mut Value) {
    for rule in RULES {
        if scope_matches(&rule.scope) && !visible(rule, audience) {
            remove_path(value, rule.path);
        }
    }
}

/// Remove from an event payload what `audience` may not see.
pub fn redact_payload(audience: Audience, event_type: &str, payload: &mut Value) {
    redact(
        |scope| matches!(scope, Scope::Events(types) if types.contains(&event_type)),
        audience,
        payload,
    );
}

/// Remove from an event's metadata what `audience` may not see.
pub fn redact_metadata(audience: Audience, metadata: &mut Value) {
    redact(|scope| *scope == Scope::Metadata, audience, metadata);
}

/// Remove from an order summary (as JSON) what `audience` may not see.
pub fn redact_summary(audience: Audience, summary: &mut Value) {
    redact(|scope| *scope == Scope::Summary, audience, summary);
}

/// Whether `audience` sees the summary field `path` (for typed summaries).
pub fn summary_field_visible(audience: Audience, path: &str) -> bool {
    RULES
        .iter()
        .filter(|r| r.scope == Scope::Summary && r.path == path)
        .all(|r| visible(r, audience))
}

/// The table as Markdown (the body of `docs/visibility.md`).
pub fn markdown_table() -> String {
    let mut out = String::from("| area | where | field |");
    for a in Audience::ALL {
        out.push_str(&format!(" {} |", a.as_str()));
    }
    out.push_str(" why |\n|---|---|---|");
    for _ in Audience::ALL {
        out.push_str("---|");
    }
    out.push_str("---|\n");
    for rule in RULES {
        let scope = match rule.scope {
            Scope::Events(types) => types.join(", "),
            Scope::Metadata => "event metadata".to_owned(),
            Scope::Summary => "order summary".to_owned(),
        };
        out.push_str(&format!("| {} | {} | `{}` |", rule.area, scope, rule.path));
        for a in Audience::ALL {
            out.push_str(if visible(rule, a) { " yes |" } else { " – |" });
        }
        out.push_str(&format!(" {} |\n", rule.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A document holding `path` with a marker value.
    fn holding(path: &str) -> Value {
        let mut value = json!("marker");
        for part in path.rsplit('.') {
            value = json!({ part: value });
        }
        value
    }

    fn has_path(value: &Value, path: &str) -> bool {
        path.split('.')
            .try_fold(value, |v, part| v.get(part))
            .is_some()
    }

    /// One check per cell of the table: the field is kept exactly for the
    /// audiences the table names.
    #[test]
    fn every_cell_of_the_table_is_enforced() {
        let mut cells = 0;
        for rule in RULES {
            for audience in Audience::ALL {
                let mut value = holding(rule.path);
                match rule.scope {
                    Scope::Events(types) => {
                        for t in types {
                            let mut v = value.clone();
                            redact_payload(audience, t, &mut v);
                            assert_eq!(
                                has_path(&v, rule.path),
                                visible(rule, audience),
                                "{t}.{} for {audience:?}",
                                rule.path
                            );
                        }
                    }
                    Scope::Metadata => {
                        redact_metadata(audience, &mut value);
                        assert_eq!(has_path(&value, rule.path), visible(rule, audience));
                    }
                    Scope::Summary => {
                        redact_summary(audience, &mut value);
                        assert_eq!(has_path(&value, rule.path), visible(rule, audience));
                        assert_eq!(
                            summary_field_visible(audience, rule.path),
                            visible(rule, audience)
                        );
                    }
                }
                cells += 1;
            }
        }
        assert_eq!(cells, RULES.len() * 6);
    }

    #[test]
    fn fields_no_rule_names_stay_and_other_events_are_untouched() {
        let mut v = json!({"order_id": "x", "price": {"total": 1, "commission": 2}});
        redact_payload(Audience::Customer, "OrderPlaced", &mut v);
        assert_eq!(v, json!({"order_id": "x", "price": {"total": 1}}));
        let mut v = json!({"dropoff_code_hash": "h"});
        redact_payload(Audience::Rider, "OrderPlaced", &mut v);
        assert_eq!(v, json!({"dropoff_code_hash": "h"}));
    }

    #[test]
    fn secrets_of_old_payloads_are_shown_to_nobody() {
        for audience in Audience::ALL {
            let mut placed = json!({"payment_method": {"kind": "card", "card_token": "tok_visa"}});
            redact_payload(audience, "OrderPlaced", &mut placed);
            assert_eq!(placed, json!({"payment_method": {"kind": "card"}}));
            let mut requested = json!({"dropoff_code": "4821", "ready_by": null});
            redact_payload(audience, "DeliveryRequested", &mut requested);
            assert_eq!(requested, json!({"ready_by": null}));
        }
    }

    #[test]
    fn the_design_doc_holds_this_table() {
        let doc = include_str!("../../docs/visibility.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/visibility.md is out of date; put this table in it:\n{}",
            markdown_table()
        );
    }
}
