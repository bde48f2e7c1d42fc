//! The saga and money under faults (issue 12): provider outages isolated per
//! order as stored retries, provider idempotency keys, capture failures as
//! events with a retry policy, delivery timeouts, timers claimed in short
//! transactions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use ordertrail_commands::saga::timers::{self, NewTimer, TimerKind};
use ordertrail_commands::service::CommandContext;
use ordertrail_domain::payment::CapturePayment;
use ordertrail_domain::provider::{
    Authorization, PaymentProvider, ProviderError, ProviderReceipt, Refund, test_tokens,
};
use ordertrail_schemas::privacy::payment_method_ref;
use sqlx::PgPool;

use super::*;

/// The recording simulated provider, with switches: cards whose
/// authorizations go unanswered, payments whose captures, voids and refunds
/// are performed but whose answers are lost (a timeout after the provider
/// acted), payments whose captures are refused, payments whose next voids or
/// refunds are refused (a count per payment; `u32::MAX` for ever).
struct SwitchableProvider {
    inner: Arc<dyn PaymentProvider>,
    cards_down: Mutex<HashSet<String>>,
    answers_lost: Mutex<HashSet<String>>,
    captures_refused: Mutex<HashSet<String>>,
    voids_refused: Mutex<HashMap<String, u32>>,
    refunds_refused: Mutex<HashMap<String, u32>>,
}

impl SwitchableProvider {
    fn new(pool: &PgPool) -> Arc<Self> {
        Arc::new(Self {
            inner: RecordingProvider::simulated(pool.clone()),
            cards_down: Mutex::default(),
            answers_lost: Mutex::default(),
            captures_refused: Mutex::default(),
            voids_refused: Mutex::default(),
            refunds_refused: Mutex::default(),
        })
    }

    /// Refuse the next `times` calls for `payment` (counted down).
    fn refuse(counts: &Mutex<HashMap<String, u32>>, payment: String, times: u32) {
        counts.lock().expect("switch").insert(payment, times);
    }

    /// Whether this call is refused (and counts it).
    fn refused(counts: &Mutex<HashMap<String, u32>>, payment: &str) -> bool {
        let mut counts = counts.lock().expect("switch");
        match counts.get_mut(payment) {
            Some(left) if *left > 0 => {
                if *left != u32::MAX {
                    *left -= 1;
                }
                true
            }
            _ => false,
        }
    }

    fn declined(code: &str) -> ProviderError {
        ProviderError::Declined { code: code.into() }
    }

    fn set(set: &Mutex<HashSet<String>>, key: String, on: bool) {
        let mut set = set.lock().expect("switch");
        if on {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    /// [`Self::set`] for the payment of `order_id`.
    fn set_payment(set: &Mutex<HashSet<String>>, order_id: OrderId, on: bool) {
        Self::set(set, PaymentId::for_order(order_id).to_string(), on);
    }

    fn has(set: &Mutex<HashSet<String>>, key: &str) -> bool {
        set.lock().expect("switch").contains(key)
    }

    fn payment_of(provider_reference: &str) -> &str {
        provider_reference
            .strip_prefix("sim_auth_")
            .unwrap_or(provider_reference)
    }

    fn lost() -> ProviderError {
        ProviderError::Unavailable {
            reason: "timed out waiting for the provider's answer".into(),
        }
    }
}

#[async_trait]
impl PaymentProvider for SwitchableProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn authorize(
        &self,
        payment_method_ref: &str,
        amount: Money,
        reference: &str,
        key: &str,
    ) -> Result<Authorization, ProviderError> {
        if Self::has(&self.cards_down, payment_method_ref) {
            return Err(Self::lost());
        }
        self.inner
            .authorize(payment_method_ref, amount, reference, key)
            .await
    }

    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<ProviderReceipt, ProviderError> {
        let payment = Self::payment_of(provider_reference);
        if Self::has(&self.captures_refused, payment) {
            return Err(ProviderError::Declined {
                code: "authorization_expired".into(),
            });
        }
        let answer = self.inner.capture(provider_reference, amount, key).await;
        if Self::has(&self.answers_lost, payment) {
            return Err(Self::lost());
        }
        answer
    }

    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<ProviderReceipt, ProviderError> {
        if Self::refused(&self.voids_refused, Self::payment_of(provider_reference)) {
            return Err(Self::declined("processing_error"));
        }
        let answer = self.inner.void(provider_reference, amount, key).await;
        if Self::has(&self.answers_lost, Self::payment_of(provider_reference)) {
            return Err(Self::lost());
        }
        answer
    }

    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
        key: &str,
    ) -> Result<Refund, ProviderError> {
        if Self::refused(&self.refunds_refused, Self::payment_of(provider_reference)) {
            return Err(Self::declined("refund_declined"));
        }
        let answer = self
            .inner
            .refund(provider_reference, amount, reference, key)
            .await;
        if Self::has(&self.answers_lost, Self::payment_of(provider_reference)) {
            return Err(Self::lost());
        }
        answer
    }
}

use ordertrail_schemas::Money;

async fn start_switchable(
    tune: impl FnOnce(&mut SagaConfig),
) -> (Env, Running<saga::SagaError>, Arc<SwitchableProvider>) {
    let mut switch = None;
    let (env, saga) = Env::start_with(tune, |pool| {
        let provider = SwitchableProvider::new(pool);
        switch = Some(provider.clone());
        Some(provider as Arc<dyn PaymentProvider>)
    })
    .await;
    (env, saga, switch.expect("provider built"))
}

impl Env {
    /// Payloads of one event type of an order's payment, in order.
    async fn payment_events(&self, order_id: OrderId, event_type: &str) -> Vec<Value> {
        sqlx::query_scalar(
            "SELECT payload::jsonb FROM events
             WHERE aggregate_type = 'Payment' AND aggregate_id = $1 AND event_type = $2
             ORDER BY sequence",
        )
        .bind(PaymentId::for_order(order_id).to_string())
        .bind(event_type)
        .fetch_all(&self.db.pool)
        .await
        .expect("payment events")
    }

    /// Captures the provider performed on an order's payment (its ledger).
    async fn provider_captures(&self, order_id: OrderId) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM simulated_provider_operations
             WHERE operation = 'capture' AND payment_id = $1",
        )
        .bind(PaymentId::for_order(order_id).to_string())
        .fetch_one(&self.db.pool)
        .await
        .expect("ledger")
    }

    async fn delivery_events(&self, order_id: OrderId) -> Vec<(String, Value)> {
        sqlx::query_as(
            "SELECT event_type, payload::jsonb FROM events
             WHERE aggregate_type = 'Delivery' AND aggregate_id = $1 ORDER BY sequence",
        )
        .bind(DeliveryId::for_order(order_id).to_string())
        .fetch_all(&self.db.pool)
        .await
        .expect("delivery events")
    }

    /// Every delivered card order's payment was captured, or says why not
    /// (a `PaymentCaptureFailed` after the delivery).
    async fn assert_no_silent_authorization_past_delivery(&self) {
        let silent: Vec<String> = sqlx::query_scalar(
            "SELECT o.aggregate_id FROM events o
             WHERE o.aggregate_type = 'Order' AND o.event_type = 'OrderDelivered'
               AND EXISTS (SELECT 1 FROM events a WHERE a.aggregate_type = 'Payment'
                             AND a.event_type = 'PaymentAuthorized'
                             AND a.payload->>'order_id' = o.aggregate_id)
               AND NOT EXISTS (SELECT 1 FROM events p WHERE p.aggregate_type = 'Payment'
                             AND p.aggregate_id IN (SELECT a.aggregate_id FROM events a
                                 WHERE a.event_type = 'PaymentAuthorized'
                                   AND a.payload->>'order_id' = o.aggregate_id)
                             AND p.event_type IN ('PaymentCaptured', 'PaymentCaptureFailed'))",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("invariant query");
        assert!(
            silent.is_empty(),
            "delivered orders whose payment stays authorized without an event saying why: {silent:?}"
        );
    }

    /// Every cancelled or rejected card order released its money, or says
    /// why not: an authorization is voided or has a `PaymentVoidFailed`; a
    /// capture is refunded in full or has a `PaymentRefundFailed`.
    async fn assert_no_silent_hold_after_cancellation(&self) {
        let silent: Vec<String> = sqlx::query_scalar(
            "WITH ended AS (
                 SELECT aggregate_id AS order_id FROM events
                 WHERE aggregate_type = 'Order' AND event_type IN ('OrderCancelled', 'OrderRejected')),
             pay AS (
                 SELECT a.aggregate_id AS payment_id, a.payload->>'order_id' AS order_id
                 FROM events a WHERE a.aggregate_type = 'Payment' AND a.event_type = 'PaymentAuthorized'),
             sums AS (
                 SELECT p.order_id,
                        count(*) FILTER (WHERE e.event_type = 'PaymentCaptured') AS captures,
                        count(*) FILTER (WHERE e.event_type IN ('PaymentVoided', 'PaymentVoidFailed')) AS void_said,
                        coalesce(sum((e.payload->'amount'->>'amount')::bigint) FILTER (WHERE e.event_type = 'PaymentCaptured'), 0)
                          - coalesce(sum((e.payload->'amount'->>'amount')::bigint) FILTER (WHERE e.event_type = 'PaymentRefunded'), 0) AS kept,
                        count(*) FILTER (WHERE e.event_type = 'PaymentRefundFailed') AS refund_failures
                 FROM pay p JOIN events e ON e.aggregate_type = 'Payment' AND e.aggregate_id = p.payment_id
                 GROUP BY p.order_id)
             SELECT s.order_id FROM sums s JOIN ended USING (order_id)
             WHERE (s.captures = 0 AND s.void_said = 0)
                OR (s.captures > 0 AND s.kept > 0 AND s.refund_failures = 0)",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("invariant query");
        assert!(
            silent.is_empty(),
            "cancelled orders holding the customer's money without an event saying why: {silent:?}"
        );
    }

    /// Operations the provider performed on an order's payment (its ledger).
    async fn provider_operations(&self, order_id: OrderId, operation: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM simulated_provider_operations
             WHERE operation = $2 AND payment_id = $1",
        )
        .bind(PaymentId::for_order(order_id).to_string())
        .bind(operation)
        .fetch_one(&self.db.pool)
        .await
        .expect("ledger")
    }

    /// `(attempt, answered, final_attempt)` of an order's failure events.
    async fn failures(&self, order_id: OrderId, event_type: &str) -> Vec<(u64, bool, bool)> {
        self.payment_events(order_id, event_type)
            .await
            .iter()
            .map(|f| {
                (
                    f["attempt"].as_u64().expect("attempt"),
                    f["answered"].as_bool().expect("answered"),
                    f["final_attempt"].as_bool().expect("final"),
                )
            })
            .collect()
    }

    /// A card order, confirmed, then captured by ops before delivery (with
    /// a reason), so that cancelling it must refund.
    async fn captured_before_delivery(&self) -> OrderId {
        let order = self.place_card(test_tokens::VISA).await;
        self.wait_order(order, OrderStatus::Confirmed).await;
        let ctx = CommandContext::new(ops(), "req-capture-early");
        let capture = CapturePayment {
            amount: None,
            order_delivered: false,
            override_reason: Some("customer asked to be charged now".into()),
            now: Utc::now(),
        };
        self.service
            .execute(&ctx, PaymentId::for_order(order), capture.into())
            .await
            .expect("ops capture");
        order
    }

    async fn cancel_by_ops(&self, order_id: OrderId) {
        let cancel = ordertrail_domain::order::CancelOrder {
            reason: "restaurant out of stock".into(),
            by: ActorRole::Ops,
            now: Utc::now(),
        };
        self.order_cmd(ops(), order_id, cancel.into()).await;
    }
}

#[tokio::test]
async fn a_refused_void_is_an_event_retried_with_back_off_until_the_provider_voids() {
    let (env, saga, provider) = start_switchable(|_| {}).await;
    let a = env.confirmed_card_order(test_tokens::VISA).await;
    SwitchableProvider::refuse(
        &provider.voids_refused,
        PaymentId::for_order(a).to_string(),
        2,
    );
    env.cancel_by_ops(a).await;
    env.wait_payment(a, PaymentStatus::Voided).await;
    env.wait_saga_caught_up().await;
    assert_eq!(
        env.failures(a, "PaymentVoidFailed").await,
        vec![(1, true, false), (2, true, false)]
    );
    let failures = env.payment_events(a, "PaymentVoidFailed").await;
    assert!(
        failures
            .iter()
            .all(|f| f["decline_code"] == "processing_error")
    );
    // Every retry was a new provider call with a new key.
    assert_ne!(
        failures[0]["idempotency_key"],
        failures[1]["idempotency_key"]
    );
    env.wait_timers(
        "release_retry",
        a,
        &[(1, Some("released")), (2, Some("released"))],
    )
    .await;
    assert_eq!(env.provider_operations(a, "void").await, 1);
    env.assert_no_silent_hold_after_cancellation().await;
    saga.stop().await;
}

#[tokio::test]
async fn a_refused_refund_is_an_event_retried_until_the_provider_refunds() {
    let (env, saga, provider) = start_switchable(|_| {}).await;
    let a = env.captured_before_delivery().await;
    SwitchableProvider::refuse(
        &provider.refunds_refused,
        PaymentId::for_order(a).to_string(),
        1,
    );
    env.cancel_by_ops(a).await;
    let payment = env.wait_payment(a, PaymentStatus::Refunded).await;
    assert_eq!(payment.refundable_amount().map(|m| m.amount), Some(0));
    env.wait_saga_caught_up().await;
    assert_eq!(
        env.failures(a, "PaymentRefundFailed").await,
        vec![(1, true, false)]
    );
    let failed = &env.payment_events(a, "PaymentRefundFailed").await[0];
    assert_eq!(failed["decline_code"], "refund_declined");
    assert_eq!(
        failed["amount"],
        env.payment_events(a, "PaymentCaptured").await[0]["amount"]
    );
    env.wait_timers("release_retry", a, &[(1, Some("released"))])
        .await;
    assert_eq!(env.provider_operations(a, "refund").await, 1);
    env.assert_no_silent_hold_after_cancellation().await;
    saga.stop().await;
}

#[tokio::test]
async fn voids_and_refunds_refused_for_ever_end_in_a_failed_state_given_up_to_ops() {
    let (env, saga, provider) = start_switchable(|_| {}).await;
    let held = env.place_card(test_tokens::VISA).await;
    let kept = env.captured_before_delivery().await;
    env.wait_order(held, OrderStatus::Confirmed).await;
    SwitchableProvider::refuse(
        &provider.voids_refused,
        PaymentId::for_order(held).to_string(),
        u32::MAX,
    );
    SwitchableProvider::refuse(
        &provider.refunds_refused,
        PaymentId::for_order(kept).to_string(),
        u32::MAX,
    );
    env.cancel_by_ops(held).await;
    env.cancel_by_ops(kept).await;
    env.wait_payment(held, PaymentStatus::VoidFailed).await;
    env.wait_payment(kept, PaymentStatus::RefundFailed).await;
    env.wait_saga_caught_up().await;
    let budget = vec![(1, true, false), (2, true, false), (3, true, true)];
    assert_eq!(env.failures(held, "PaymentVoidFailed").await, budget);
    assert_eq!(env.failures(kept, "PaymentRefundFailed").await, budget);
    // Two stored retries each; none after the final refusal.
    for order in [held, kept] {
        env.wait_timers(
            "release_retry",
            order,
            &[(1, Some("released")), (2, Some("released"))],
        )
        .await;
    }
    assert_eq!(env.provider_operations(held, "void").await, 0);
    assert_eq!(env.provider_operations(kept, "refund").await, 0);
    // Nothing moved silently: the failure events say why.
    env.assert_no_silent_hold_after_cancellation().await;
    // Ops may release the money once the provider accepts.
    let ctx = CommandContext::new(ops(), "req-void-again");
    env.service
        .execute(
            &ctx,
            PaymentId::for_order(held),
            ordertrail_domain::payment::VoidPayment { now: Utc::now() }.into(),
        )
        .await
        .expect("ops void");
    assert_eq!(
        env.payment(held).await.and_then(|p| p.status()),
        Some(PaymentStatus::Voided)
    );
    saga.stop().await;
}

#[tokio::test]
async fn a_provider_outage_for_one_order_never_delays_another_and_it_completes_after_recovery() {
    let (env, saga, provider) = start_switchable(|c| {
        // Order A is retried as long as the outage lasts.
        c.payment_retry_limit = 1_000;
        c.payment_retry_backoff = Duration::from_millis(50);
    })
    .await;
    // A's card gets no answer from the provider; B's does.
    let card_a = payment_method_ref(test_tokens::MASTERCARD);
    SwitchableProvider::set(&provider.cards_down, card_a.clone(), true);
    let a = env.place_card(test_tokens::MASTERCARD).await;
    let b = env.confirmed_card_order(test_tokens::VISA).await;
    eventually("A's authorization retries are stored", WAIT, || async {
        (env.timers("authorize_retry", a).await.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(env.order(a).await.status(), Some(OrderStatus::Placed));
    SwitchableProvider::set(&provider.cards_down, card_a, false);
    env.wait_order(a, OrderStatus::Confirmed).await;

    // A's captures are performed, but their answers are lost.
    let payment_a = PaymentId::for_order(a).to_string();
    SwitchableProvider::set(&provider.answers_lost, payment_a.clone(), true);
    env.run_delivery(a, rider_n(1)).await;
    env.wait_order(a, OrderStatus::Delivered).await;
    env.run_delivery(b, rider_n(2)).await;
    env.wait_payment(b, PaymentStatus::Captured).await;
    let failures = eventually("A's capture failures are recorded", WAIT, || async {
        let failures = env.payment_events(a, "PaymentCaptureFailed").await;
        (failures.len() >= 2).then_some(failures)
    })
    .await;
    assert_eq!(
        env.payment(a).await.and_then(|p| p.status()),
        Some(PaymentStatus::Authorized)
    );
    for failure in &failures {
        assert_eq!(failure["answered"], false);
        assert_eq!(failure["decline_code"], "provider_unavailable");
        assert_eq!(failure["final_attempt"], false);
        // Until the provider answers, every attempt repeats the first key.
        assert_eq!(failure["idempotency_key"], failures[0]["idempotency_key"]);
    }
    env.assert_no_silent_authorization_past_delivery().await;

    SwitchableProvider::set(&provider.answers_lost, payment_a, false);
    env.wait_payment(a, PaymentStatus::Captured).await;
    // The provider performed A's capture once, however often it was asked.
    assert_eq!(env.provider_captures(a).await, 1);
    assert_eq!(env.provider_captures(b).await, 1);
    let captured = env.payment_events(a, "PaymentCaptured").await;
    assert_eq!(captured.len(), 1);
    env.assert_no_silent_authorization_past_delivery().await;
    saga.stop().await;
}

#[tokio::test]
async fn a_void_whose_answer_is_lost_is_retried_from_a_stored_timer_and_voids_once() {
    let (env, saga, provider) = start_switchable(|_| {}).await;
    let a = env.confirmed_card_order(test_tokens::VISA).await;
    SwitchableProvider::set_payment(&provider.answers_lost, a, true);
    let reject = RejectOrder {
        reason: "kitchen closed".into(),
        now: Utc::now(),
    };
    env.order_cmd(restaurant(), a, reject.into()).await;
    eventually("void retries are stored", WAIT, || async {
        (env.timers("release_retry", a).await.len() >= 2).then_some(())
    })
    .await;
    // Meanwhile another order flows.
    env.confirmed_card_order(test_tokens::VISA).await;
    SwitchableProvider::set_payment(&provider.answers_lost, a, false);
    env.wait_payment(a, PaymentStatus::Voided).await;
    let voids: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM simulated_provider_operations WHERE operation = 'void' AND payment_id = $1",
    )
    .bind(PaymentId::for_order(a).to_string())
    .fetch_one(&env.db.pool)
    .await
    .expect("ledger");
    assert_eq!(voids, 1, "every retry repeated the first void's key");
    saga.stop().await;
}

#[tokio::test]
async fn refused_captures_are_events_retried_with_back_off_then_given_up_to_ops() {
    let (env, saga, provider) = start_switchable(|_| {}).await;
    let a = env.confirmed_card_order(test_tokens::VISA).await;
    SwitchableProvider::set_payment(&provider.captures_refused, a, true);
    env.run_delivery(a, rider_n(1)).await;
    env.wait_order(a, OrderStatus::Delivered).await;
    env.wait_payment(a, PaymentStatus::CaptureFailed).await;
    env.wait_saga_caught_up().await;
    let failures = env.payment_events(a, "PaymentCaptureFailed").await;
    let seen: Vec<(u64, bool, bool)> = failures
        .iter()
        .map(|f| {
            (
                f["attempt"].as_u64().expect("attempt"),
                f["answered"].as_bool().expect("answered"),
                f["final_attempt"].as_bool().expect("final"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(1, true, false), (2, true, false), (3, true, true)]
    );
    assert!(
        failures
            .iter()
            .all(|f| f["decline_code"] == "authorization_expired")
    );
    // Two stored retries, each sent a new capture; none after the final one.
    env.wait_timers(
        "capture_retry",
        a,
        &[(1, Some("capture_sent")), (2, Some("capture_sent"))],
    )
    .await;
    assert_eq!(env.provider_captures(a).await, 0);
    env.assert_no_silent_authorization_past_delivery().await;
    // Ops can still release the money.
    let ctx = CommandContext::new(ops(), "req-void");
    env.service
        .execute(
            &ctx,
            PaymentId::for_order(a),
            ordertrail_domain::payment::VoidPayment { now: Utc::now() }.into(),
        )
        .await
        .expect("ops void");
    saga.stop().await;
}

#[tokio::test]
async fn a_capture_repeated_with_its_command_id_is_charged_once() {
    let (env, saga) = Env::start(|_| {}).await;
    let a = env.confirmed_card_order(test_tokens::VISA).await;
    let payment_id = PaymentId::for_order(a);
    let payment = env.payment(a).await.expect("payment");
    let amount = payment.authorized_amount().expect("authorized");
    // An ops capture reaches the provider, and the process dies before the
    // append: the provider acted under the command's key.
    let provider = RecordingProvider::simulated(env.db.pool.clone());
    let service = CommandService::new(env.db.pool.clone(), provider.clone());
    let command_id = Uuid::new_v4();
    let ctx =
        CommandContext::new(ops(), "req-capture").caused_by(command_id, command_id, command_id);
    let first = provider
        .capture(
            payment.provider_reference().expect("reference"),
            amount,
            &format!("ot-{command_id}"),
        )
        .await
        .expect("the provider captures");
    assert_eq!(env.provider_captures(a).await, 1);
    // The command is sent again with the same id: the provider answers from
    // its key and charges nothing more; the event records its answer.
    let capture = CapturePayment {
        amount: Some(amount),
        order_delivered: false,
        override_reason: Some("customer asked to be charged now".into()),
        now: Utc::now(),
    };
    let outcome = service
        .execute(&ctx, payment_id, capture.clone().into())
        .await
        .expect("capture");
    assert!(!outcome.replayed);
    assert_eq!(env.provider_captures(a).await, 1);
    let captured = env.payment_events(a, "PaymentCaptured").await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0]["fee"]["amount"], first.fee.amount);
    // Sent once more: the command log answers; nothing is appended or charged.
    let again = service
        .execute(&ctx, payment_id, capture.into())
        .await
        .expect("repeat");
    assert!(again.replayed);
    assert_eq!(env.provider_captures(a).await, 1);
    // The same key with other parameters is refused by the provider.
    let half = Money::new(amount.amount / 2, amount.currency);
    let reused = provider
        .capture(
            payment.provider_reference().expect("reference"),
            half,
            &format!("ot-{command_id}"),
        )
        .await
        .expect_err("reused key");
    assert_eq!(
        reused,
        ProviderError::Declined {
            code: ordertrail_domain::provider::IDEMPOTENCY_KEY_REUSED.into()
        }
    );
    saga.stop().await;
}

#[tokio::test]
async fn a_rider_who_does_not_pick_up_in_time_loses_the_delivery_which_is_flagged_again() {
    let (env, saga) = Env::start(|c| {
        c.pickup_timeout = Duration::from_millis(500);
        c.assign_timeout = Duration::from_millis(1_500);
    })
    .await;
    let a = env.confirmed_card_order(test_tokens::VISA).await;
    env.accept(a).await;
    env.rider_takes(a, rider_n(1)).await;
    let events = eventually(
        "the rider is taken off and the delivery flagged again",
        WAIT,
        || async {
            let events = env.delivery_events(a).await;
            let unassigned = events.iter().position(|(t, _)| t == "RiderUnassigned")?;
            events[unassigned..]
                .iter()
                .any(|(t, _)| t == "DeliveryFlagged")
                .then_some(events)
        },
    )
    .await;
    let (_, unassigned) = events
        .iter()
        .find(|(t, _)| t == "RiderUnassigned")
        .expect("unassigned");
    assert!(
        unassigned["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not picked up within")),
        "{unassigned}"
    );
    let (_, flagged) = events
        .iter()
        .rev()
        .find(|(t, _)| t == "DeliveryFlagged")
        .expect("flagged");
    assert!(
        flagged["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("lost its rider")),
        "{flagged}"
    );
    env.wait_timers(
        "pickup_timeout",
        DeliveryId::for_order(a),
        &[(0, Some("rider_unassigned"))],
    )
    .await;
    saga.stop().await;
}

#[tokio::test]
async fn a_delivery_not_completed_in_time_is_flagged_and_can_still_complete() {
    let (env, saga) = Env::start(|c| {
        c.completion_timeout = Duration::from_millis(800);
    })
    .await;
    let a = env.confirmed_card_order(test_tokens::VISA).await;
    env.accept_and_pick_up(a, rider_n(1)).await;
    let flagged = eventually("the overdue delivery is flagged", WAIT, || async {
        env.delivery_events(a)
            .await
            .into_iter()
            .find(|(t, _)| t == "DeliveryFlagged")
            .map(|(_, p)| p)
    })
    .await;
    assert!(
        flagged["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not completed within")),
        "{flagged}"
    );
    env.wait_timers(
        "completion_timeout",
        DeliveryId::for_order(a),
        &[(0, Some("delivery_flagged"))],
    )
    .await;
    env.wait_order(a, OrderStatus::PickedUp).await;
    env.complete(a, rider_n(1)).await;
    env.wait_payment(a, PaymentStatus::Captured).await;
    saga.stop().await;
}

#[tokio::test]
async fn a_due_timer_is_claimed_with_a_lease_and_no_transaction_stays_open() {
    let db = ordertrail_testkit::pg::TestDatabase::with_pool_size(4).await;
    let timer = |kind, attempt| NewTimer {
        kind,
        aggregate_id: "order-x".into(),
        attempt,
        due_at: Utc::now() - chrono::TimeDelta::seconds(1),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        origin: None,
    };
    let first = timer(TimerKind::CaptureRetry, 1);
    assert!(timers::schedule(&db.pool, &first).await.expect("schedule"));
    assert!(!timers::schedule(&db.pool, &first).await.expect("again"));
    let lease = Duration::from_secs(60);
    let claimed = timers::claim_due(&db.pool, lease, "saga-a")
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claimed.timer_id, first.timer_id());
    // Claimed, and nothing holds a transaction or a row lock meanwhile.
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("activity");
    assert_eq!(open, 0);
    assert!(
        timers::claim_due(&db.pool, lease, "saga-b")
            .await
            .expect("claim")
            .is_none(),
        "a leased timer is not claimed twice"
    );
    // A claim that runs out (its holder died) is claimed again.
    let second = timer(TimerKind::ReleaseRetry, 1);
    timers::schedule(&db.pool, &second).await.expect("schedule");
    let gone = timers::claim_due(&db.pool, Duration::ZERO, "saga-dead")
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(gone.timer_id, second.timer_id());
    let again = timers::claim_due(&db.pool, lease, "saga-b")
        .await
        .expect("claim")
        .expect("lease ran out");
    assert_eq!(again.timer_id, second.timer_id());
    timers::fired(&db.pool, first.timer_id(), "done")
        .await
        .expect("fired");
    timers::fired(&db.pool, second.timer_id(), "done")
        .await
        .expect("fired");
    timers::unclaim(&db.pool, first.timer_id())
        .await
        .expect("unclaim");
    assert!(
        timers::claim_due(&db.pool, Duration::ZERO, "saga-c")
            .await
            .expect("claim")
            .is_none(),
        "fired timers are never claimed"
    );
}
