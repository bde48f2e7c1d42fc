//! The payment provider's own record of what it did — **the simulation's
//! side**, kept apart from our events so the reconciliation compares two
//! independent accounts.
//!
//! [`RecordingProvider`] wraps any [`PaymentProvider`] (in practice the
//! [`ordertrail_domain::SimulatedProvider`]) and writes one row to
//! `simulated_provider_operations` for each operation the provider answered
//! successfully, at the moment it answered: before, and independently of, the
//! events the command then appends. A command that loses its append after the
//! provider acted therefore shows up as a break ("missing on our side"), as it
//! would with a real provider. `ordertrail-reconcile provider-statement`
//! exports a day of this table as the provider's statement (CSV).
//!
//! Recording is best effort: a failed insert is logged and the provider's
//! answer is returned unchanged (the provider did act).
//!
//! **Idempotency keys across processes.** The API and the saga each hold
//! their own simulated provider; a real provider keeps its idempotency keys
//! on its side for every client. The ledger plays that part: each row carries
//! the call's idempotency key and a fingerprint of its parameters, and a call
//! whose key is in the ledger is answered from the row (same parameters; no
//! second operation, no second row) or refused with `idempotency_key_reused`
//! (other parameters), before the wrapped provider is asked. So a command
//! repeated after a crash between the provider's answer and the append (in
//! whichever process) is not charged twice.
//!
//! **Fault injection (drills).** While the file named by
//! [`PROVIDER_FAULT_FILE_ENV`] exists, the simulated provider fails every
//! capture, void and refund without acting ([`ProviderFault`]): it refuses
//! (`processing_error`) or does not answer, alternately, or only one of the
//! two when the file says `refuse` or `unanswered`. Authorizations keep their
//! card-token faults (`tok_flaky_<n>`, `tok_unavailable`). The switch is a
//! file so a drill can flip it for every process at once (`scripts/chaos.sh`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::Utc;
use ordertrail_domain::provider::{
    Authorization, IDEMPOTENCY_KEY_REUSED, PaymentProvider, ProviderError, ProviderReceipt, Refund,
    SimulatedProvider, request_fingerprint,
};
use ordertrail_schemas::Money;
use sqlx::PgPool;

/// Operation names in the ledger and in the statement CSV.
pub mod operation {
    pub const AUTHORIZATION: &str = "authorization";
    pub const CAPTURE: &str = "capture";
    pub const VOID: &str = "void";
    pub const REFUND: &str = "refund";
}

/// The environment variable naming the simulated provider's fault switch
/// file (see the module documentation).
pub const PROVIDER_FAULT_FILE_ENV: &str = "ORDERTRAIL_PROVIDER_FAULT_FILE";

/// The simulated provider's fault switch: while `file` exists, captures,
/// voids and refunds fail without acting.
#[derive(Debug)]
pub struct ProviderFault {
    file: PathBuf,
    calls: AtomicU64,
}

impl ProviderFault {
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            calls: AtomicU64::new(0),
        }
    }

    /// The switch named by [`PROVIDER_FAULT_FILE_ENV`], if set.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(PROVIDER_FAULT_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(Self::new)
    }

    /// The failure of this call while the switch is on.
    fn failure(&self, operation: &str) -> Option<ProviderError> {
        // The file's content picks the failure; no file, no fault.
        let mode = std::fs::read_to_string(&self.file).ok()?;
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let refuse = match mode.trim() {
            "refuse" => true,
            "unanswered" => false,
            _ => n.is_multiple_of(2),
        };
        tracing::info!(operation, refuse, "simulated provider fault injected");
        Some(if refuse {
            ProviderError::Declined {
                code: "processing_error".to_owned(),
            }
        } else {
            ProviderError::Unavailable {
                reason: format!("simulated provider outage ({operation})"),
            }
        })
    }

    fn check(fault: &Option<Self>, operation: &str) -> Result<(), ProviderError> {
        match fault.as_ref().and_then(|f| f.failure(operation)) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// A provider whose successful operations are written to the simulation's ledger.
pub struct RecordingProvider {
    inner: Arc<dyn PaymentProvider>,
    pool: PgPool,
    fault: Option<ProviderFault>,
}

impl RecordingProvider {
    pub fn new(inner: Arc<dyn PaymentProvider>, pool: PgPool) -> Self {
        Self {
            inner,
            pool,
            fault: None,
        }
    }

    /// With a fault switch (see [`ProviderFault`]).
    pub fn with_fault(mut self, fault: Option<ProviderFault>) -> Self {
        self.fault = fault;
        self
    }

    /// The [`SimulatedProvider`] with its ledger in `pool`'s database: what
    /// the API and the saga run with; its fault switch is the file named by
    /// [`PROVIDER_FAULT_FILE_ENV`], if set.
    pub fn simulated(pool: PgPool) -> Arc<dyn PaymentProvider> {
        Arc::new(
            Self::new(Arc::new(SimulatedProvider::new()), pool)
                .with_fault(ProviderFault::from_env()),
        )
    }

    /// The ledger's answer to a call made before with `key`: `Ok(None)` when
    /// the key is new; the stored row (its provider reference and fee) when
    /// the parameters match; a refusal when they differ.
    async fn remembered(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<(String, i64)>, ProviderError> {
        let row: Option<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT provider_reference, fee_minor, request_fingerprint
             FROM simulated_provider_operations WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| ProviderError::Unavailable {
            reason: format!("the provider cannot look up its idempotency keys: {e}"),
        })?;
        match row {
            None => Ok(None),
            Some((reference, fee, seen)) if seen.as_deref() == Some(fingerprint) => {
                tracing::info!(
                    idempotency_key = key,
                    "provider call repeated with its idempotency key; answered from the first"
                );
                Ok(Some((reference, fee)))
            }
            Some(_) => Err(ProviderError::Declined {
                code: IDEMPOTENCY_KEY_REUSED.to_owned(),
            }),
        }
    }

    /// Record one operation. `payment_id` is our reference when the call
    /// carries it; otherwise (capture, void) the authorization's row names it.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        op: &str,
        provider_reference: &str,
        payment_id: Option<&str>,
        amount: Money,
        fee: Money,
        key: &str,
        fingerprint: &str,
    ) {
        let result = sqlx::query(
            "INSERT INTO simulated_provider_operations
               (operation, provider_reference, payment_id, amount_minor, currency, fee_minor, occurred_at,
                idempotency_key, request_fingerprint)
             SELECT $1, $2, coalesce($3, (SELECT a.payment_id FROM simulated_provider_operations a
                                           WHERE a.operation = 'authorization' AND a.provider_reference = $2
                                           ORDER BY a.id LIMIT 1), ''),
                    $4, $5, $6, $7, $8, $9
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
        )
        .bind(op)
        .bind(provider_reference)
        .bind(payment_id)
        .bind(amount.amount)
        .bind(amount.currency.to_string())
        .bind(fee.amount)
        .bind(Utc::now())
        .bind(key)
        .bind(fingerprint)
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            tracing::error!(%error, operation = op, provider_reference, "cannot record the simulated provider's operation");
        }
    }
}

impl std::fmt::Debug for RecordingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingProvider")
            .field("provider", &self.inner.name())
            .finish()
    }
}

impl RecordingProvider {
    /// A capture or a void: a repeated key is answered from the record
    /// (never asked twice), a new one asks the provider (`call`, not polled
    /// before) and records the answer.
    async fn answered_once(
        &self,
        op: &'static str,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
        call: impl Future<Output = Result<ProviderReceipt, ProviderError>>,
    ) -> Result<ProviderReceipt, ProviderError> {
        ProviderFault::check(&self.fault, op)?;
        let fingerprint = request_fingerprint(op, provider_reference, amount);
        if let Some((_, fee)) = self.remembered(idempotency_key, &fingerprint).await? {
            return Ok(ProviderReceipt {
                fee: Money::new(fee, amount.currency),
                processed_at: None,
            });
        }
        let receipt = call.await?;
        self.record(
            op,
            provider_reference,
            None,
            amount,
            receipt.fee,
            idempotency_key,
            &fingerprint,
        )
        .await;
        Ok(receipt)
    }
}

#[async_trait]
impl PaymentProvider for RecordingProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn authorize(
        &self,
        card_token: &str,
        amount: Money,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Authorization, ProviderError> {
        let fingerprint = request_fingerprint(
            operation::AUTHORIZATION,
            &format!("{reference}|{card_token}"),
            amount,
        );
        if let Some((provider_reference, fee)) =
            self.remembered(idempotency_key, &fingerprint).await?
        {
            return Ok(Authorization {
                provider_reference,
                fee: Money::new(fee, amount.currency),
            });
        }
        let auth = self
            .inner
            .authorize(card_token, amount, reference, idempotency_key)
            .await?;
        self.record(
            operation::AUTHORIZATION,
            &auth.provider_reference,
            Some(reference),
            amount,
            auth.fee,
            idempotency_key,
            &fingerprint,
        )
        .await;
        Ok(auth)
    }

    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderReceipt, ProviderError> {
        let call = self
            .inner
            .capture(provider_reference, amount, idempotency_key);
        self.answered_once(
            operation::CAPTURE,
            provider_reference,
            amount,
            idempotency_key,
            call,
        )
        .await
    }

    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderReceipt, ProviderError> {
        let call = self.inner.void(provider_reference, amount, idempotency_key);
        self.answered_once(
            operation::VOID,
            provider_reference,
            amount,
            idempotency_key,
            call,
        )
        .await
    }

    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Refund, ProviderError> {
        ProviderFault::check(&self.fault, operation::REFUND)?;
        let fingerprint = request_fingerprint(
            operation::REFUND,
            &format!("{provider_reference}|{reference}"),
            amount,
        );
        if let Some((refund_reference, fee)) =
            self.remembered(idempotency_key, &fingerprint).await?
        {
            return Ok(Refund {
                provider_reference: refund_reference,
                fee: Money::new(fee, amount.currency),
            });
        }
        let refund = self
            .inner
            .refund(provider_reference, amount, reference, idempotency_key)
            .await?;
        // Our refund reference is `<payment id>_refund_<n>`.
        let payment_id = reference.split("_refund_").next();
        self.record(
            operation::REFUND,
            &refund.provider_reference,
            payment_id,
            amount,
            refund.fee,
            idempotency_key,
            &fingerprint,
        )
        .await;
        Ok(refund)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_switch_fails_calls_only_while_its_file_exists_as_its_content_says() {
        let file = std::env::temp_dir().join(format!("ot-fault-{}", uuid::Uuid::new_v4()));
        let fault = Some(ProviderFault::new(&file));
        assert_eq!(ProviderFault::check(&fault, "void"), Ok(()));
        assert_eq!(ProviderFault::check(&None, "void"), Ok(()));
        let refused = Err(ProviderError::Declined {
            code: "processing_error".into(),
        });
        let unanswered = |op: &str| {
            Err(ProviderError::Unavailable {
                reason: format!("simulated provider outage ({op})"),
            })
        };
        std::fs::write(&file, "").unwrap();
        // Alternately refused and unanswered.
        assert_eq!(ProviderFault::check(&fault, "capture"), refused);
        assert_eq!(ProviderFault::check(&fault, "refund"), unanswered("refund"));
        std::fs::write(&file, "refuse\n").unwrap();
        for op in ["capture", "void"] {
            assert_eq!(ProviderFault::check(&fault, op), refused);
        }
        std::fs::write(&file, "unanswered").unwrap();
        assert_eq!(ProviderFault::check(&fault, "void"), unanswered("void"));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(ProviderFault::check(&fault, "void"), Ok(()));
    }
}
