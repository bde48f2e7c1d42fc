//! The payment provider interface, as a real provider client would expose
//! it, and [`SimulatedProvider`], a deterministic stand-in for development,
//! tests and load runs.
//!
//! The payment aggregate reaches the provider only through
//! `Arc<dyn PaymentProvider>` in its services; what the provider answered
//! (references, fees, decline codes) is recorded on the events, so replaying
//! the events never calls the provider again.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use ordertrail_schemas::Money;
use ordertrail_schemas::events::PaymentMethod;
use ordertrail_schemas::privacy::payment_method_ref;

use crate::text::{self, TextError};

/// A successful authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The provider's id for this authorization; used to capture, void and refund.
    pub provider_reference: String,
    /// Fee the provider charges for the authorization.
    pub fee: Money,
}

/// A successful capture or void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReceipt {
    /// Fee the provider charges for the operation.
    pub fee: Money,
    /// When the provider says the operation happened, if it reports it: the
    /// business time of a capture (recorded as `captured_at`). The simulated
    /// provider reports none; the command's time is used then.
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A successful refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The provider's id for this refund.
    pub provider_reference: String,
    /// Fee the provider charges for the refund.
    pub fee: Money,
}

/// Why the provider did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A final answer: the provider refused (e.g. `insufficient_funds`).
    #[error("declined by the payment provider: {code}")]
    Declined {
        /// The provider's decline code, e.g. `card_declined`.
        code: String,
    },
    /// No answer: the provider could not be reached or failed; retry later.
    #[error("payment provider unavailable: {reason}")]
    Unavailable {
        /// What went wrong reaching the provider (for logs).
        reason: String,
    },
}

/// A card payment provider client.
///
/// Every call carries an `idempotency_key` (ours, derived from the id of the
/// command that makes the call): the provider answers a repeated key with the
/// answer it gave the first time and acts once, and refuses a key it has seen
/// with other parameters ([`ProviderError::Declined`] with code
/// [`IDEMPOTENCY_KEY_REUSED`]). Failures without an answer
/// ([`ProviderError::Unavailable`]) are not remembered: the same key may be
/// tried again. A caller whose call failed without an answer retries with the
/// same key, so an operation whose answer was lost is never performed twice.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Short stable name recorded on the events, e.g. `simulated`.
    fn name(&self) -> &str;

    /// Reserve `amount` on the card behind `payment_method_ref` (the opaque
    /// reference events carry, see [`card_payment_method`]; resolving it to
    /// a card is the provider's business). `reference` is our idempotency
    /// reference (the payment id).
    async fn authorize(
        &self,
        payment_method_ref: &str,
        amount: Money,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Authorization, ProviderError>;

    /// Take `amount` (at most the authorized amount) of an authorization.
    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderReceipt, ProviderError>;

    /// Release an uncaptured authorization. `amount` is the authorized amount
    /// being released (providers echo it back; it also fixes the fee currency).
    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderReceipt, ProviderError>;

    /// Return `amount` of a captured authorization to the customer.
    /// `reference` is our idempotency reference for this one refund (payment
    /// id and refund number), so a retried refund is never paid out twice.
    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Refund, ProviderError>;
}

/// Decline code of a call whose idempotency key was used before with other
/// parameters.
pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";

/// What a provider remembers of an answered call under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RememberedAnswer {
    /// An authorization was given.
    Authorized(Authorization),
    /// A capture or void was done.
    Receipt(ProviderReceipt),
    /// A refund was paid out.
    Refunded(Refund),
    /// The call was declined with this code.
    Declined {
        /// The provider's decline code.
        code: String,
    },
}

/// The parameters of a call, as compared for a repeated idempotency key.
pub fn request_fingerprint(operation: &str, reference: &str, amount: Money) -> String {
    format!(
        "{operation}|{reference}|{}|{}",
        amount.amount, amount.currency
    )
}

/// Card tokens the [`SimulatedProvider`] understands.
/// The payment method events carry for a card token the client sent: an
/// opaque reference (`pm_...`), never the token. A blank token gives an empty
/// reference (placing or authorizing with it answers `card_token_required`);
/// a token breaking [`text::CARD_TOKEN`] is refused.
pub fn card_payment_method(card_token: &str) -> Result<PaymentMethod, TextError> {
    if card_token.trim().is_empty() {
        return Ok(PaymentMethod::Card {
            payment_method_ref: String::new(),
        });
    }
    text::CARD_TOKEN.check(card_token)?;
    Ok(PaymentMethod::Card {
        payment_method_ref: payment_method_ref(card_token),
    })
}

/// The card token behind a reference, for the simulated provider: the
/// references of every test token are recomputed and compared (the
/// simulated "vault"; a real provider looks its own references up).
fn simulated_token_for(payment_method_ref_value: &str) -> Option<String> {
    const FIXED: [&str; 5] = [
        test_tokens::VISA,
        test_tokens::MASTERCARD,
        test_tokens::DECLINED,
        test_tokens::INSUFFICIENT_FUNDS,
        test_tokens::UNAVAILABLE,
    ];
    FIXED
        .iter()
        .map(|t| (*t).to_owned())
        .chain((0..=test_tokens::MAX_FLAKY).map(|n| format!("{}{n}", test_tokens::FLAKY_PREFIX)))
        .find(|token| payment_method_ref(token) == payment_method_ref_value)
}

/// Card tokens the [`SimulatedProvider`] understands, by behaviour.
pub mod test_tokens {
    /// Always authorizes.
    pub const VISA: &str = "tok_visa";
    /// Always authorizes.
    pub const MASTERCARD: &str = "tok_mastercard";
    /// Declined with `card_declined`.
    pub const DECLINED: &str = "tok_declined";
    /// Declined with `insufficient_funds`.
    pub const INSUFFICIENT_FUNDS: &str = "tok_insufficient_funds";
    /// The provider is always unavailable.
    pub const UNAVAILABLE: &str = "tok_unavailable";
    /// `tok_flaky_<n>`: unavailable for the first `n` authorize attempts of a
    /// reference, then authorizes.
    pub const FLAKY_PREFIX: &str = "tok_flaky_";
    /// Largest `n` of `tok_flaky_<n>` the simulated provider resolves.
    pub const MAX_FLAKY: u32 = 100;
}

/// Capture fee of the simulated provider: 1.4 % ...
pub const SIMULATED_CAPTURE_FEE_BPS: i64 = 140;
/// ... plus 25 minor units.
pub const SIMULATED_CAPTURE_FEE_FIXED: i64 = 25;

const AUTH_PREFIX: &str = "sim_auth_";

/// A deterministic payment provider: its answers depend only on the card
/// token, the reference and how often the reference was tried before.
///
/// | token | authorize |
/// |---|---|
/// | `tok_visa`, `tok_mastercard` | succeeds, reference `sim_auth_<reference>`, fee 0 |
/// | `tok_declined` | declined `card_declined` |
/// | `tok_insufficient_funds` | declined `insufficient_funds` |
/// | `tok_unavailable` | unavailable, always |
/// | `tok_flaky_<n>` | unavailable for the first `n` attempts of the reference, then succeeds |
/// | anything else | declined `invalid_token` |
///
/// Capture costs 1.4 % + 25 minor units (rounded half up); void and refund
/// are free. Capture, void and refund decline references it did not issue
/// (`unknown_reference`). Refund references are `sim_refund_<reference>`.
#[derive(Debug, Default)]
pub struct SimulatedProvider {
    state: Mutex<SimulatedState>,
}

#[derive(Debug, Default)]
struct SimulatedState {
    /// Authorize attempts per reference.
    authorize_attempts: HashMap<String, u32>,
    /// Answered calls by idempotency key: the request's fingerprint and the answer.
    answers: HashMap<String, (String, RememberedAnswer)>,
    /// Captures performed (each one charges the card), per authorization.
    captures: HashMap<String, u32>,
}

impl SimulatedProvider {
    /// The provider name recorded on events.
    pub const NAME: &'static str = "simulated";

    /// A provider that has seen no calls yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Capture fee for `amount`: 1.4 % rounded half up, plus 25.
    pub fn capture_fee(amount: Money) -> Money {
        let percent = amount
            .percent_bps(SIMULATED_CAPTURE_FEE_BPS)
            .map_or(i64::MAX, |m| m.amount);
        Money::new(
            percent.saturating_add(SIMULATED_CAPTURE_FEE_FIXED),
            amount.currency,
        )
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut SimulatedState) -> T) -> T {
        // A poisoned lock only means another caller panicked; the counters are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// How many captures were performed on `provider_reference` (each
    /// charges the card; a repeated idempotency key does not).
    pub fn captures_performed(&self, provider_reference: &str) -> u32 {
        self.with_state(|s| s.captures.get(provider_reference).copied().unwrap_or(0))
    }

    /// The remembered answer for `key`: `None` when the key is new,
    /// `Some(Err)` when it was used with other parameters.
    fn remembered(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Option<Result<RememberedAnswer, ProviderError>> {
        self.with_state(|s| {
            s.answers.get(key).map(|(seen, answer)| {
                if seen == fingerprint {
                    Ok(answer.clone())
                } else {
                    Err(declined(IDEMPOTENCY_KEY_REUSED))
                }
            })
        })
    }

    /// Remember an answered call (a decline or a success; never an outage).
    fn remember<T: Remembered>(
        &self,
        key: &str,
        fingerprint: String,
        result: &Result<T, ProviderError>,
    ) {
        let answer = match result {
            Ok(v) => v.pack(),
            Err(ProviderError::Declined { code }) => {
                RememberedAnswer::Declined { code: code.clone() }
            }
            Err(ProviderError::Unavailable { .. }) => return,
        };
        self.with_state(|s| {
            s.answers
                .entry(key.to_owned())
                .or_insert((fingerprint, answer));
        });
    }

    /// Answers a call made under idempotency key `key` the way providers
    /// do: a key seen with the same parameters (`fingerprint`) gets the
    /// remembered answer, with other parameters a refusal
    /// ([`IDEMPOTENCY_KEY_REUSED`]); a new key runs `call` and remembers its
    /// answer (a success or a decline, never an outage).
    async fn answer_once<T: Remembered>(
        &self,
        key: &str,
        fingerprint: String,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        match self.remembered(key, &fingerprint) {
            Some(Ok(RememberedAnswer::Declined { code })) => return Err(declined(&code)),
            // A key remembered for another operation: its parameters differ.
            Some(Ok(answer)) => {
                return T::unpack(answer).ok_or_else(|| declined(IDEMPOTENCY_KEY_REUSED));
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let result = call.await;
        self.remember(key, fingerprint, &result);
        result
    }

    fn check_reference(provider_reference: &str) -> Result<&str, ProviderError> {
        match provider_reference.strip_prefix(AUTH_PREFIX) {
            Some(reference) if !reference.is_empty() => Ok(reference),
            _ => Err(declined("unknown_reference")),
        }
    }
}

fn declined(code: &str) -> ProviderError {
    ProviderError::Declined {
        code: code.to_owned(),
    }
}

/// A successful answer the simulated provider remembers under its key.
trait Remembered: Sized {
    /// The answer remembered for this operation; `None` for another's.
    fn unpack(answer: RememberedAnswer) -> Option<Self>;
    fn pack(&self) -> RememberedAnswer;
}

/// `Type => Variant`: `Type` is remembered as `RememberedAnswer::Variant`.
macro_rules! remembered_as {
    ($($answer:ty => $variant:ident),+ $(,)?) => {$(
        impl Remembered for $answer {
            fn unpack(answer: RememberedAnswer) -> Option<Self> {
                match answer {
                    RememberedAnswer::$variant(a) => Some(a),
                    _ => None,
                }
            }

            fn pack(&self) -> RememberedAnswer {
                RememberedAnswer::$variant(self.clone())
            }
        }
    )+};
}

remembered_as!(
    Authorization => Authorized,
    ProviderReceipt => Receipt,
    Refund => Refunded,
);

impl SimulatedProvider {
    async fn authorize_once(
        &self,
        payment_method_ref: &str,
        amount: Money,
        reference: &str,
    ) -> Result<Authorization, ProviderError> {
        let Some(card_token) = simulated_token_for(payment_method_ref) else {
            return Err(declined("invalid_token"));
        };
        let attempt = self.with_state(|s| {
            let n = s
                .authorize_attempts
                .entry(reference.to_owned())
                .or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        if amount.amount <= 0 {
            return Err(declined("invalid_amount"));
        }
        match card_token.as_str() {
            test_tokens::VISA | test_tokens::MASTERCARD => {}
            test_tokens::DECLINED => return Err(declined("card_declined")),
            test_tokens::INSUFFICIENT_FUNDS => return Err(declined("insufficient_funds")),
            test_tokens::UNAVAILABLE => {
                return Err(ProviderError::Unavailable {
                    reason: "simulated outage".to_owned(),
                });
            }
            other => match other
                .strip_prefix(test_tokens::FLAKY_PREFIX)
                .map(str::parse::<u32>)
            {
                Some(Ok(failures)) if attempt <= failures => {
                    return Err(ProviderError::Unavailable {
                        reason: format!(
                            "simulated flaky outage (attempt {attempt} of {failures} failing)"
                        ),
                    });
                }
                Some(Ok(_)) => {}
                _ => return Err(declined("invalid_token")),
            },
        }
        Ok(Authorization {
            provider_reference: format!("{AUTH_PREFIX}{reference}"),
            fee: Money::zero(amount.currency),
        })
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn authorize(
        &self,
        payment_method_ref: &str,
        amount: Money,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Authorization, ProviderError> {
        let fingerprint = request_fingerprint(
            "authorization",
            &format!("{reference}|{payment_method_ref}"),
            amount,
        );
        self.answer_once(
            idempotency_key,
            fingerprint,
            self.authorize_once(payment_method_ref, amount, reference),
        )
        .await
    }

    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderReceipt, ProviderError> {
        let fingerprint = request_fingerprint("capture", provider_reference, amount);
        let call = async {
            let result = Self::check_reference(provider_reference).and_then(|_| {
                if amount.amount <= 0 {
                    return Err(declined("invalid_amount"));
                }
                Ok(ProviderReceipt {
                    fee: Self::capture_fee(amount),
                    processed_at: None,
                })
            });
            if result.is_ok() {
                self.with_state(|s| {
                    let n = s.captures.entry(provider_reference.to_owned()).or_insert(0);
                    *n = n.saturating_add(1);
                });
            }
            result
        };
        self.answer_once(idempotency_key, fingerprint, call).await
    }

    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderReceipt, ProviderError> {
        let fingerprint = request_fingerprint("void", provider_reference, amount);
        let call = async {
            Self::check_reference(provider_reference).map(|_| ProviderReceipt {
                fee: Money::zero(amount.currency),
                processed_at: None,
            })
        };
        self.answer_once(idempotency_key, fingerprint, call).await
    }

    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Refund, ProviderError> {
        let fingerprint = request_fingerprint(
            "refund",
            &format!("{provider_reference}|{reference}"),
            amount,
        );
        let call = async {
            Self::check_reference(provider_reference).and_then(|_| {
                if amount.amount <= 0 {
                    return Err(declined("invalid_amount"));
                }
                Ok(Refund {
                    provider_reference: format!("sim_refund_{reference}"),
                    fee: Money::zero(amount.currency),
                })
            })
        };
        self.answer_once(idempotency_key, fingerprint, call).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ordertrail_schemas::Currency;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::EUR)
    }

    /// A fresh idempotency key per call.
    fn key() -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        format!(
            "key-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    }

    fn unavailable(e: &ProviderError) -> bool {
        matches!(e, ProviderError::Unavailable { .. })
    }

    #[tokio::test]
    async fn good_cards_authorize_with_a_deterministic_reference_and_no_fee() {
        let p = SimulatedProvider::new();
        for token in [test_tokens::VISA, test_tokens::MASTERCARD] {
            let auth = p
                .authorize(&payment_method_ref(token), eur(1_000), "pay-1", &key())
                .await
                .unwrap();
            assert_eq!(
                auth,
                Authorization {
                    provider_reference: "sim_auth_pay-1".into(),
                    fee: eur(0)
                }
            );
        }
        assert_eq!(p.name(), "simulated");
    }

    #[tokio::test]
    async fn declining_tokens_give_their_codes() {
        let p = SimulatedProvider::new();
        for (token, amount, expected) in [
            ("tok_declined", 100, "card_declined"),
            ("tok_insufficient_funds", 100, "insufficient_funds"),
            ("tok_amex", 100, "invalid_token"),
            ("", 100, "invalid_token"),
            ("tok_flaky_x", 100, "invalid_token"),
            ("tok_visa", 0, "invalid_amount"),
        ] {
            let answer = p
                .authorize(&payment_method_ref(token), eur(amount), "r", &key())
                .await;
            match answer {
                Err(ProviderError::Declined { code }) => {
                    assert_eq!(code, expected, "token {token:?}, amount {amount}");
                }
                other => panic!("token {token:?}: expected a decline, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn unavailable_token_never_succeeds() {
        let p = SimulatedProvider::new();
        for _ in 0..5 {
            assert!(unavailable(
                &p.authorize(
                    &payment_method_ref("tok_unavailable"),
                    eur(100),
                    "r",
                    &key()
                )
                .await
                .unwrap_err()
            ));
        }
    }

    #[tokio::test]
    async fn flaky_token_fails_n_times_per_reference_then_succeeds() {
        let p = SimulatedProvider::new();
        assert!(unavailable(
            &p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a", &key())
                .await
                .unwrap_err()
        ));
        assert!(unavailable(
            &p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a", &key())
                .await
                .unwrap_err()
        ));
        // Another reference counts on its own.
        assert!(unavailable(
            &p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "b", &key())
                .await
                .unwrap_err()
        ));
        let auth = p
            .authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a", &key())
            .await
            .unwrap();
        assert_eq!(auth.provider_reference, "sim_auth_a");
        assert!(
            p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a", &key())
                .await
                .is_ok()
        );
        assert!(
            p.authorize(&payment_method_ref("tok_flaky_0"), eur(100), "c", &key())
                .await
                .is_ok()
        );
    }

    #[test]
    fn capture_fee_is_one_point_four_percent_plus_25_rounded_half_up() {
        assert_eq!(SimulatedProvider::capture_fee(eur(10_000)), eur(165));
        assert_eq!(SimulatedProvider::capture_fee(eur(1_000)), eur(39));
        assert_eq!(SimulatedProvider::capture_fee(eur(25)), eur(25)); // 0.35 -> 0
        assert_eq!(SimulatedProvider::capture_fee(eur(75)), eur(26)); // 1.05 -> 1
        assert_eq!(SimulatedProvider::capture_fee(eur(250)), eur(29)); // 3.5 -> 4
        assert_eq!(SimulatedProvider::capture_fee(eur(1)), eur(25));
    }

    #[tokio::test]
    async fn capture_void_refund_need_a_reference_it_issued() {
        let p = SimulatedProvider::new();
        let receipt = p.capture("sim_auth_r", eur(2_599), &key()).await.unwrap();
        assert_eq!(receipt.fee, eur(61)); // 36.386 + 25
        assert_eq!(
            p.void("sim_auth_r", eur(2_599), &key()).await.unwrap().fee,
            eur(0)
        );
        let refund = p
            .refund("sim_auth_r", eur(500), "r_refund_1", &key())
            .await
            .unwrap();
        assert_eq!(
            refund,
            Refund {
                provider_reference: "sim_refund_r_refund_1".into(),
                fee: eur(0)
            }
        );
        let invalid = ProviderError::Declined {
            code: "invalid_amount".into(),
        };
        assert_eq!(
            p.refund("sim_auth_r", eur(0), "r_refund_2", &key())
                .await
                .unwrap_err(),
            invalid
        );
        let unknown = ProviderError::Declined {
            code: "unknown_reference".into(),
        };
        assert_eq!(
            p.capture("stripe_123", eur(1), &key()).await.unwrap_err(),
            unknown
        );
        assert_eq!(
            p.void("sim_auth_", eur(1), &key()).await.unwrap_err(),
            unknown
        );
        assert_eq!(
            p.refund("x", eur(1), "x_refund_1", &key())
                .await
                .unwrap_err(),
            unknown
        );
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_gets_the_first_answer_and_charges_once() {
        let p = SimulatedProvider::new();
        let first = p.capture("sim_auth_r", eur(2_599), "cmd-1").await.unwrap();
        let again = p.capture("sim_auth_r", eur(2_599), "cmd-1").await.unwrap();
        assert_eq!(first, again);
        assert_eq!(p.captures_performed("sim_auth_r"), 1);
        // The same key with other parameters is refused, and charges nothing.
        let reused = ProviderError::Declined {
            code: IDEMPOTENCY_KEY_REUSED.into(),
        };
        assert_eq!(
            p.capture("sim_auth_r", eur(100), "cmd-1")
                .await
                .unwrap_err(),
            reused
        );
        assert_eq!(
            p.void("sim_auth_r", eur(2_599), "cmd-1").await.unwrap_err(),
            reused
        );
        assert_eq!(p.captures_performed("sim_auth_r"), 1);
        // A new key is a new capture.
        p.capture("sim_auth_r", eur(2_599), "cmd-2").await.unwrap();
        assert_eq!(p.captures_performed("sim_auth_r"), 2);
        // Declines are remembered; outages are not (the key may be retried).
        let token = payment_method_ref("tok_flaky_1");
        assert!(unavailable(
            &p.authorize(&token, eur(100), "pay-f", "auth-1")
                .await
                .unwrap_err()
        ));
        let auth = p
            .authorize(&token, eur(100), "pay-f", "auth-1")
            .await
            .unwrap();
        assert_eq!(auth.provider_reference, "sim_auth_pay-f");
        let declined_once = p
            .authorize(
                &payment_method_ref("tok_declined"),
                eur(100),
                "pay-d",
                "auth-2",
            )
            .await
            .unwrap_err();
        assert_eq!(
            p.authorize(
                &payment_method_ref("tok_declined"),
                eur(100),
                "pay-d",
                "auth-2"
            )
            .await
            .unwrap_err(),
            declined_once
        );
    }

    #[test]
    fn it_is_usable_as_a_shared_trait_object() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn PaymentProvider>();
        let _shared: std::sync::Arc<dyn PaymentProvider> =
            std::sync::Arc::new(SimulatedProvider::new());
    }
}
