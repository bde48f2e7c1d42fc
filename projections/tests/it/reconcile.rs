//! Reconciliation of [`crate::settlements::scripted_day`]: the events stored
//! in `events`, the settlement read model built by the real projector from
//! Kafka, and a provider statement from the simulation's ledger. A clean day
//! has no break; each injected break is reported once, with its references.

use chrono::NaiveDate;
use ordertrail_projections::ProjectorKind;
use ordertrail_projections::reconcile::{self, BreakKind, Report, StatementLine, statement};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use sqlx::PgPool;
use uuid::Uuid;

use crate::settlements::{BERLIN, scripted_day};
use crate::support::*;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, d).unwrap_or_default()
}

/// What the provider did, as its own ledger records it (one row per
/// provider operation of the payment events).
async fn provider_ledger(pool: &PgPool, envelopes: &[EventEnvelope]) {
    let mut auth_refs = std::collections::HashMap::new();
    for e in envelopes
        .iter()
        .filter(|e| e.aggregate_type == AggregateKind::Payment)
    {
        let p = &e.payload;
        let reference = |field: &str| p[field].as_str().unwrap_or_default().to_owned();
        let (op, reference, at) = match e.event_type.as_str() {
            "PaymentAuthorized" => {
                auth_refs.insert(e.aggregate_id.clone(), reference("provider_reference"));
                (
                    "authorization",
                    reference("provider_reference"),
                    "authorized_at",
                )
            }
            "PaymentCaptured" => ("capture", auth_refs[&e.aggregate_id].clone(), "captured_at"),
            "PaymentVoided" => ("void", auth_refs[&e.aggregate_id].clone(), "voided_at"),
            "PaymentRefunded" => ("refund", reference("provider_reference"), "refunded_at"),
            _ => continue,
        };
        let at: chrono::DateTime<chrono::Utc> = p[at]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("business time");
        sqlx::query(
            "INSERT INTO simulated_provider_operations
               (operation, provider_reference, payment_id, amount_minor, currency, fee_minor, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(op)
        .bind(reference)
        .bind(&e.aggregate_id)
        .bind(p["amount"]["amount"].as_i64().expect("amount"))
        .bind(p["amount"]["currency"].as_str().expect("currency"))
        .bind(p["fee"]["amount"].as_i64().expect("fee"))
        .bind(at)
        .execute(pool)
        .await
        .expect("ledger row");
    }
}

fn count(report: &Report, kind: BreakKind) -> usize {
    report.breaks.iter().filter(|b| b.kind == kind).count()
}

fn the_break(report: &Report, kind: BreakKind) -> &reconcile::Break {
    let found: Vec<_> = report.breaks.iter().filter(|b| b.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind:?} in {:#?}", report.breaks);
    found[0]
}

fn line_index(lines: &[StatementLine], op: &str, payment: PaymentId) -> usize {
    lines
        .iter()
        .position(|l| l.operation == op && l.payment_id == payment.to_string())
        .unwrap_or_else(|| panic!("no {op} of {payment}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_day_has_no_breaks_and_each_injected_break_is_reported_once() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let (mut script, specs) =
        scripted_day(restaurant, CustomerId::new_random(), RiderId::new_random());
    // The provider's own references, one per authorization.
    for e in &mut script.envelopes {
        if e.event_type == "PaymentAuthorized" {
            e.payload["provider_reference"] = format!("sim_auth_{}", e.aggregate_id).into();
        }
    }
    let money: Vec<EventEnvelope> = script
        .envelopes
        .iter()
        .filter(|e| e.aggregate_type != AggregateKind::Delivery)
        .cloned()
        .collect();
    store_events(env.pool(), &script.envelopes).await;
    provider_ledger(env.pool(), &script.envelopes).await;
    env.produce(&money).await;
    env.project(ProjectorKind::Settlements, "settle").await;

    // The statement as the simulated provider exports it, through its CSV.
    let csv = statement::to_csv(
        &reconcile::simulated_statement(env.pool(), day(10), day(12))
            .await
            .expect("statement"),
    );
    let clean = statement::parse(&csv).expect("parse statement");
    assert_eq!(
        clean.len(),
        7,
        "A, B: auth + capture; B refund; C auth + void"
    );

    let report = reconcile::reconcile(env.pool(), day(10), day(12), Some(&clean))
        .await
        .expect("reconcile");
    assert!(report.is_clean(), "{:#?}", report.breaks);
    let s = &report.summary;
    assert_eq!(
        (
            s.restaurant_days_from_events,
            s.restaurant_days_in_read_model,
            s.provider_days_from_events,
            s.provider_days_in_read_model,
            s.ledger_operations,
            s.statement_lines,
        ),
        (3, 3, 3, 3, 7, 7)
    );
    assert_eq!(
        s.net_payable_from_events.get("EUR"),
        Some(&(2_899 + 203 - 435 - 85 + 5_798 + 406 - 870 - 65 - 510))
    );

    // Inject one break of each kind.
    let [a, b, c, _] = &specs[..] else {
        panic!("four orders")
    };
    let mut lines = clean.clone();
    // Amount changed: A's capture.
    let i = line_index(&lines, "capture", a.payment_id());
    lines[i].amount_minor += 1;
    // Fee changed: B's capture.
    let i = line_index(&lines, "capture", b.payment_id());
    lines[i].fee_minor += 1;
    // Currency changed: A's authorization.
    let i = line_index(&lines, "authorization", a.payment_id());
    lines[i].currency = "GBP".into();
    // Duplicate: B's refund twice.
    let i = line_index(&lines, "refund", b.payment_id());
    lines.push(lines[i].clone());
    // A statement line removed: C's void.
    let i = line_index(&lines, "void", c.payment_id());
    let removed = lines.remove(i);
    // An extra charge we know nothing of.
    let stranger = PaymentId(Uuid::new_v4());
    lines.push(StatementLine {
        operation: "capture".into(),
        provider_reference: format!("sim_auth_{stranger}"),
        payment_id: stranger.to_string(),
        amount_minor: 4_200,
        currency: "EUR".into(),
        fee_minor: 84,
        occurred_at: at(2025, 1, 11, 10, 0),
    });
    // A settlement row tampered in the read model, a provider day too.
    let r = restaurant.as_uuid();
    sqlx::query(
        "UPDATE restaurant_settlement_days SET net_payable_minor = net_payable_minor + 100
         WHERE restaurant_id = $1 AND business_day = $2",
    )
    .bind(r)
    .bind(day(11))
    .execute(env.pool())
    .await
    .expect("tamper");
    sqlx::query("UPDATE provider_settlement_days SET fees_minor = fees_minor - 1 WHERE day = $1")
        .bind(day(12))
        .execute(env.pool())
        .await
        .expect("tamper provider day");

    let report = reconcile::reconcile(env.pool(), day(10), day(12), Some(&lines))
        .await
        .expect("reconcile");
    let expected = [
        BreakKind::AmountMismatch,
        BreakKind::FeeMismatch,
        BreakKind::CurrencyMismatch,
        BreakKind::Duplicate,
        BreakKind::MissingAtProvider,
        BreakKind::MissingOnOurSide,
        BreakKind::RestaurantDayMismatch,
        BreakKind::ProviderDayMismatch,
    ];
    for kind in BreakKind::ALL {
        let want = usize::from(expected.contains(&kind));
        assert_eq!(count(&report, kind), want, "{kind:?}: {:#?}", report.breaks);
        assert_eq!(report.summary.breaks_by_kind[kind.as_str()], want);
    }
    assert_eq!(report.summary.breaks, expected.len());

    let auth_ref = |p: PaymentId| Some(format!("sim_auth_{p}"));
    let x = the_break(&report, BreakKind::AmountMismatch);
    assert_eq!(
        (x.subject.as_str(), &x.provider_reference, &x.payment_id),
        (
            "capture",
            &auth_ref(a.payment_id()),
            &Some(a.payment_id().to_string())
        )
    );
    assert_eq!(x.diffs[0].ours, Some(a.total().to_string()));
    assert_eq!(x.diffs[0].theirs, Some((a.total() + 1).to_string()));
    let x = the_break(&report, BreakKind::FeeMismatch);
    assert_eq!(x.provider_reference, auth_ref(b.payment_id()));
    assert_eq!(
        (x.diffs[0].ours.as_deref(), x.diffs[0].theirs.as_deref()),
        (Some("35"), Some("36"))
    );
    let x = the_break(&report, BreakKind::CurrencyMismatch);
    assert_eq!(
        (x.subject.as_str(), &x.provider_reference),
        ("authorization", &auth_ref(a.payment_id()))
    );
    let x = the_break(&report, BreakKind::Duplicate);
    assert_eq!(
        (
            x.subject.as_str(),
            x.provider_reference.as_deref(),
            x.side.as_deref()
        ),
        ("refund", Some("ref-1"), Some("provider"))
    );
    let x = the_break(&report, BreakKind::MissingAtProvider);
    assert_eq!(
        (x.subject.as_str(), &x.provider_reference, &x.payment_id),
        (
            "void",
            &Some(removed.provider_reference.clone()),
            &Some(c.payment_id().to_string())
        )
    );
    let x = the_break(&report, BreakKind::MissingOnOurSide);
    assert_eq!(x.payment_id, Some(stranger.to_string()));
    let x = the_break(&report, BreakKind::RestaurantDayMismatch);
    assert_eq!((x.subject.clone(), x.day), (r.to_string(), Some(day(11))));
    assert_eq!(x.diffs.len(), 1);
    assert_eq!(x.diffs[0].field, "net_payable_minor");
    let x = the_break(&report, BreakKind::ProviderDayMismatch);
    assert_eq!((x.subject.as_str(), x.day), ("simulated", Some(day(12))));
    assert_eq!(x.diffs[0].field, "fees_minor");
    // Every break is in the CSV export.
    assert_eq!(report.breaks_csv().lines().count(), 1 + expected.len());

    // A read-model day that is missing, and one the events never produced.
    sqlx::query(
        "DELETE FROM restaurant_settlement_days WHERE restaurant_id = $1 AND business_day = $2",
    )
    .bind(r)
    .bind(day(12))
    .execute(env.pool())
    .await
    .expect("delete");
    sqlx::query(
        "INSERT INTO restaurant_settlement_days (restaurant_id, business_day, currency, orders)
         VALUES ($1, $2, 'EUR', 1)",
    )
    .bind(Uuid::new_v4())
    .bind(day(10))
    .execute(env.pool())
    .await
    .expect("insert");
    let report = reconcile::reconcile(env.pool(), day(10), day(12), None)
        .await
        .expect("reconcile");
    assert_eq!(count(&report, BreakKind::RestaurantDayMissing), 1);
    assert_eq!(count(&report, BreakKind::RestaurantDayUnexpected), 1);
    assert_eq!(
        the_break(&report, BreakKind::RestaurantDayMissing).day,
        Some(day(12))
    );
}

/// Cancelled orders of one Berlin restaurant on Jan 11 whose money was not
/// released: `held` (void refused three times: `void_failed`), `kept`
/// (captured by ops before delivery, refund refused three times:
/// `refund_failed`), `waiting` (one unanswered void, a retry pending) and
/// `released` (void refused once, then voided).
fn money_held_day(restaurant: RestaurantId, customer: CustomerId) -> (Script, [OrderSpec; 4]) {
    let mut s = Script::default();
    let specs = [(); 4].map(|()| OrderSpec::new(restaurant, customer, BERLIN));
    let m = chrono::Duration::minutes;
    let failure = |attempt: u32, answered: bool, final_attempt: bool| {
        let code = if answered {
            "processing_error"
        } else {
            "provider_unavailable"
        };
        (
            code.to_owned(),
            answered,
            format!("ot-{attempt}"),
            attempt,
            final_attempt,
        )
    };
    for (n, spec) in specs.iter().enumerate() {
        let placed = at(2025, 1, 11, 12, 0) + m(10 * n as i64);
        let pay = spec.payment_id();
        s.order(spec.order, spec.placed(placed), placed);
        s.authorized(spec, format!("sim_auth_{pay}"), 0, placed);
        if n == 1 {
            s.payment(
                pay,
                PaymentCaptured {
                    amount: eur(spec.total()),
                    fee: eur(50),
                    captured_at: placed + m(1),
                    override_reason: Some("customer asked to be charged now".into()),
                },
                placed + m(1),
            );
        }
        s.order_cancelled(
            spec.order,
            "restaurant out of stock",
            ActorRole::Ops,
            placed + m(2),
        );
        let failures = match n {
            0 | 1 => vec![
                failure(1, true, false),
                failure(2, true, false),
                failure(3, true, true),
            ],
            2 => vec![failure(1, false, false)],
            _ => vec![failure(1, true, false)],
        };
        for (i, (decline_code, answered, idempotency_key, attempt, final_attempt)) in
            failures.into_iter().enumerate()
        {
            let t = placed + m(3 + i as i64);
            if n == 1 {
                let failed = PaymentRefundFailed {
                    amount: eur(spec.total()),
                    reason: "order cancelled: restaurant out of stock".into(),
                    provider: "simulated".into(),
                    decline_code,
                    answered,
                    idempotency_key,
                    attempt,
                    final_attempt,
                    failed_at: t,
                };
                s.payment(pay, failed, t);
            } else {
                let failed = PaymentVoidFailed {
                    amount: eur(spec.total()),
                    provider: "simulated".into(),
                    decline_code,
                    answered,
                    idempotency_key,
                    attempt,
                    final_attempt,
                    failed_at: t,
                };
                s.payment(pay, failed, t);
            }
        }
        if n == 3 {
            s.payment(
                pay,
                PaymentVoided {
                    amount: eur(spec.total()),
                    fee: eur(0),
                    voided_at: placed + m(9),
                },
                placed + m(9),
            );
        }
    }
    (s, specs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_a_cancelled_order_still_holds_is_a_break_until_released_and_ops_see_why() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let (script, [held, kept, waiting, released]) =
        money_held_day(restaurant, CustomerId::new_random());
    store_events(env.pool(), &script.envelopes).await;
    provider_ledger(env.pool(), &script.envelopes).await;
    env.produce(&script.envelopes).await;
    env.project(ProjectorKind::Settlements, "settle").await;
    env.project(ProjectorKind::OrderHistory, "history").await;

    // Ops see the final states in the order history.
    let status = |spec: &OrderSpec| {
        let pool = env.pool().clone();
        let id = spec.order.as_uuid();
        async move {
            ordertrail_projections::queries::orders::order_detail(
                &pool,
                ordertrail_projections::queries::Viewer::All,
                id,
            )
            .await
            .unwrap_or_else(|e| panic!("detail: {e}"))
            .order
            .payment_status
        }
    };
    assert_eq!(status(&held).await.as_deref(), Some("void_failed"));
    assert_eq!(status(&kept).await.as_deref(), Some("refund_failed"));
    assert_eq!(status(&waiting).await.as_deref(), Some("authorized"));
    assert_eq!(status(&released).await.as_deref(), Some("voided"));

    let statement = reconcile::simulated_statement(env.pool(), day(10), day(12))
        .await
        .expect("statement");
    let report = reconcile::reconcile(env.pool(), day(11), day(11), Some(&statement))
        .await
        .expect("reconcile");
    // The failures moved no money: settlements and ledger agree; only the
    // money still held is reported.
    assert_eq!(
        count(&report, BreakKind::AuthorizationHeld),
        2,
        "{:#?}",
        report.breaks
    );
    assert_eq!(
        count(&report, BreakKind::RefundOutstanding),
        1,
        "{:#?}",
        report.breaks
    );
    assert_eq!(report.summary.breaks, 3, "{:#?}", report.breaks);
    assert_eq!(report.summary.breaks_by_kind["authorization_held"], 2);
    let field = |b: &reconcile::Break, name: &str| {
        b.diffs
            .iter()
            .find(|d| d.field == name)
            .and_then(|d| d.ours.clone())
            .unwrap_or_default()
    };
    let by_payment = |p: PaymentId| {
        report
            .breaks
            .iter()
            .find(|b| b.payment_id == Some(p.to_string()))
            .unwrap_or_else(|| panic!("no break for {p}: {:#?}", report.breaks))
    };
    let x = by_payment(held.payment_id());
    assert_eq!(
        (x.kind, x.subject.as_str(), x.day, x.currency.as_deref()),
        (
            BreakKind::AuthorizationHeld,
            "void",
            Some(day(11)),
            Some("EUR")
        )
    );
    assert_eq!(field(x, "held_minor"), held.total().to_string());
    assert_eq!(field(x, "order_id"), held.order.to_string());
    assert_eq!(
        field(x, "last_failure"),
        "PaymentVoidFailed processing_error attempt 3 final"
    );
    let x = by_payment(kept.payment_id());
    assert_eq!(
        (x.kind, x.subject.as_str()),
        (BreakKind::RefundOutstanding, "refund")
    );
    assert_eq!(field(x, "held_minor"), kept.total().to_string());
    assert_eq!(
        field(x, "last_failure"),
        "PaymentRefundFailed processing_error attempt 3 final"
    );
    let x = by_payment(waiting.payment_id());
    assert_eq!(
        field(x, "last_failure"),
        "PaymentVoidFailed provider_unavailable attempt 1"
    );
    assert!(
        report
            .breaks
            .iter()
            .all(|b| b.payment_id != Some(released.payment_id().to_string())),
        "released money is no break"
    );
    // Reported on every later reconciliation until released; not before
    // the order ended.
    let later = reconcile::reconcile(env.pool(), day(20), day(21), None)
        .await
        .expect("reconcile later");
    assert_eq!(count(&later, BreakKind::AuthorizationHeld), 2);
    let before = reconcile::reconcile(env.pool(), day(9), day(10), None)
        .await
        .expect("reconcile before");
    assert_eq!(count(&before, BreakKind::AuthorizationHeld), 0);
}
