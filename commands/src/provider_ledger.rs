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

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use ordertrail_domain::provider::{
    Authorization, PaymentProvider, ProviderError, ProviderReceipt, Refund, SimulatedProvider,
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

/// A provider whose successful operations are written to the simulation's ledger.
pub struct RecordingProvider {
    inner: Arc<dyn PaymentProvider>,
    pool: PgPool,
}

impl RecordingProvider {
    pub fn new(inner: Arc<dyn PaymentProvider>, pool: PgPool) -> Self {
        Self { inner, pool }
    }

    /// The [`SimulatedProvider`] with its ledger in `pool`'s database: what
    /// the API and the saga run with.
    pub fn simulated(pool: PgPool) -> Arc<dyn PaymentProvider> {
        Arc::new(Self::new(Arc::new(SimulatedProvider::new()), pool))
    }

    /// Record one operation. `payment_id` is our reference when the call
    /// carries it; otherwise (capture, void) the authorization's row names it.
    async fn record(
        &self,
        op: &str,
        provider_reference: &str,
        payment_id: Option<&str>,
        amount: Money,
        fee: Money,
    ) {
        let result = sqlx::query(
            "INSERT INTO simulated_provider_operations
               (operation, provider_reference, payment_id, amount_minor, currency, fee_minor, occurred_at)
             SELECT $1, $2, coalesce($3, (SELECT a.payment_id FROM simulated_provider_operations a
                                           WHERE a.operation = 'authorization' AND a.provider_reference = $2
                                           ORDER BY a.id LIMIT 1), ''),
                    $4, $5, $6, $7",
        )
        .bind(op)
        .bind(provider_reference)
        .bind(payment_id)
        .bind(amount.amount)
        .bind(amount.currency.to_string())
        .bind(fee.amount)
        .bind(Utc::now())
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
    ) -> Result<Authorization, ProviderError> {
        let auth = self.inner.authorize(card_token, amount, reference).await?;
        self.record(
            operation::AUTHORIZATION,
            &auth.provider_reference,
            Some(reference),
            amount,
            auth.fee,
        )
        .await;
        Ok(auth)
    }

    async fn capture(
        &self,
        provider_reference: &str,
        amount: Money,
    ) -> Result<ProviderReceipt, ProviderError> {
        let receipt = self.inner.capture(provider_reference, amount).await?;
        self.record(
            operation::CAPTURE,
            provider_reference,
            None,
            amount,
            receipt.fee,
        )
        .await;
        Ok(receipt)
    }

    async fn void(
        &self,
        provider_reference: &str,
        amount: Money,
    ) -> Result<ProviderReceipt, ProviderError> {
        let receipt = self.inner.void(provider_reference, amount).await?;
        self.record(
            operation::VOID,
            provider_reference,
            None,
            amount,
            receipt.fee,
        )
        .await;
        Ok(receipt)
    }

    async fn refund(
        &self,
        provider_reference: &str,
        amount: Money,
        reference: &str,
    ) -> Result<Refund, ProviderError> {
        let refund = self
            .inner
            .refund(provider_reference, amount, reference)
            .await?;
        // Our refund reference is `<payment id>_refund_<n>`.
        let payment_id = reference.split("_refund_").next();
        self.record(
            operation::REFUND,
            &refund.provider_reference,
            payment_id,
            amount,
            refund.fee,
        )
        .await;
        Ok(refund)
    }
}
