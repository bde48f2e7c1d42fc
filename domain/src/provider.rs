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
    Declined { code: String },
    /// No answer: the provider could not be reached or failed; retry later.
    #[error("payment provider unavailable: {reason}")]
    Unavailable { reason: String },
}

/// A card payment provider client.
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
    ) -> Result<Authorization, ProviderError>;

    /// Take `amount` (at most the authorized amount) of an authorization.
    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
    ) -> Result<ProviderReceipt, ProviderError>;

    /// Release an uncaptured authorization. `amount` is the authorized amount
    /// being released (providers echo it back; it also fixes the fee currency).
    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
    ) -> Result<ProviderReceipt, ProviderError>;

    /// Return `amount` of a captured authorization to the customer.
    /// `reference` is our idempotency reference for this one refund (payment
    /// id and refund number), so a retried refund is never paid out twice.
    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
    ) -> Result<Refund, ProviderError>;
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
}

impl SimulatedProvider {
    pub const NAME: &'static str = "simulated";

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

    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
    ) -> Result<ProviderReceipt, ProviderError> {
        Self::check_reference(provider_reference)?;
        if amount.amount <= 0 {
            return Err(declined("invalid_amount"));
        }
        Ok(ProviderReceipt {
            fee: Self::capture_fee(amount),
            processed_at: None,
        })
    }

    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
    ) -> Result<ProviderReceipt, ProviderError> {
        Self::check_reference(provider_reference)?;
        Ok(ProviderReceipt {
            fee: Money::zero(amount.currency),
            processed_at: None,
        })
    }

    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
    ) -> Result<Refund, ProviderError> {
        Self::check_reference(provider_reference)?;
        if amount.amount <= 0 {
            return Err(declined("invalid_amount"));
        }
        Ok(Refund {
            provider_reference: format!("sim_refund_{reference}"),
            fee: Money::zero(amount.currency),
        })
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

    fn unavailable(e: &ProviderError) -> bool {
        matches!(e, ProviderError::Unavailable { .. })
    }

    #[tokio::test]
    async fn good_cards_authorize_with_a_deterministic_reference_and_no_fee() {
        let p = SimulatedProvider::new();
        for token in [test_tokens::VISA, test_tokens::MASTERCARD] {
            let auth = p
                .authorize(&payment_method_ref(token), eur(1_000), "pay-1")
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
        let code = |r: Result<Authorization, ProviderError>| match r {
            Err(ProviderError::Declined { code }) => code,
            other => panic!("expected a decline, got {other:?}"),
        };
        assert_eq!(
            code(
                p.authorize(&payment_method_ref("tok_declined"), eur(100), "r")
                    .await
            ),
            "card_declined"
        );
        assert_eq!(
            code(
                p.authorize(&payment_method_ref("tok_insufficient_funds"), eur(100), "r")
                    .await
            ),
            "insufficient_funds"
        );
        assert_eq!(
            code(
                p.authorize(&payment_method_ref("tok_amex"), eur(100), "r")
                    .await
            ),
            "invalid_token"
        );
        assert_eq!(
            code(p.authorize(&payment_method_ref(""), eur(100), "r").await),
            "invalid_token"
        );
        assert_eq!(
            code(
                p.authorize(&payment_method_ref("tok_flaky_x"), eur(100), "r")
                    .await
            ),
            "invalid_token"
        );
        assert_eq!(
            code(
                p.authorize(&payment_method_ref("tok_visa"), eur(0), "r")
                    .await
            ),
            "invalid_amount"
        );
    }

    #[tokio::test]
    async fn unavailable_token_never_succeeds() {
        let p = SimulatedProvider::new();
        for _ in 0..5 {
            assert!(unavailable(
                &p.authorize(&payment_method_ref("tok_unavailable"), eur(100), "r")
                    .await
                    .unwrap_err()
            ));
        }
    }

    #[tokio::test]
    async fn flaky_token_fails_n_times_per_reference_then_succeeds() {
        let p = SimulatedProvider::new();
        assert!(unavailable(
            &p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a")
                .await
                .unwrap_err()
        ));
        assert!(unavailable(
            &p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a")
                .await
                .unwrap_err()
        ));
        // Another reference counts on its own.
        assert!(unavailable(
            &p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "b")
                .await
                .unwrap_err()
        ));
        let auth = p
            .authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a")
            .await
            .unwrap();
        assert_eq!(auth.provider_reference, "sim_auth_a");
        assert!(
            p.authorize(&payment_method_ref("tok_flaky_2"), eur(100), "a")
                .await
                .is_ok()
        );
        assert!(
            p.authorize(&payment_method_ref("tok_flaky_0"), eur(100), "c")
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
        let receipt = p.capture("sim_auth_r", eur(2_599)).await.unwrap();
        assert_eq!(receipt.fee, eur(61)); // 36.386 + 25
        assert_eq!(p.void("sim_auth_r", eur(2_599)).await.unwrap().fee, eur(0));
        let refund = p
            .refund("sim_auth_r", eur(500), "r_refund_1")
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
            p.refund("sim_auth_r", eur(0), "r_refund_2")
                .await
                .unwrap_err(),
            invalid
        );
        let unknown = ProviderError::Declined {
            code: "unknown_reference".into(),
        };
        assert_eq!(p.capture("stripe_123", eur(1)).await.unwrap_err(), unknown);
        assert_eq!(p.void("sim_auth_", eur(1)).await.unwrap_err(), unknown);
        assert_eq!(
            p.refund("x", eur(1), "x_refund_1").await.unwrap_err(),
            unknown
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
