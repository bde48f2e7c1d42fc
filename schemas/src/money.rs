//! Money in integer minor units with an ISO 4217 currency. Never floats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// ISO 4217 alphabetic currency code, three upper-case ASCII letters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "CurrencyCode")]
pub struct Currency([u8; 3]);

/// Schema stand-in for [`Currency`].
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
struct CurrencyCode(#[schemars(regex(pattern = r"^[A-Z]{3}$"))] String);

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The code is not three upper-case letters.
    #[error("currency must be three upper-case letters, got {0:?}")]
    InvalidCurrency(String),
    #[error("currency mismatch: {left} vs {right}")]
    /// Two amounts in different currencies were added or compared.
    CurrencyMismatch {
        /// The currency of the left operand.
        left: Currency,
        /// The currency of the right operand.
        right: Currency,
    },
    /// The result does not fit in `i64` minor units.
    #[error("amount overflow")]
    Overflow,
}

impl Currency {
    /// Euro.
    pub const EUR: Currency = Currency(*b"EUR");
    /// US dollar.
    pub const USD: Currency = Currency(*b"USD");
    /// Pound sterling.
    pub const GBP: Currency = Currency(*b"GBP");

    /// Parse a currency code; only `[A-Z]{3}` is accepted.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(MoneyError::InvalidCurrency(code.to_owned()))
        }
    }

    /// The ISO 4217 code, e.g. `EUR`.
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

/// An amount of money: integer minor units (cents) and a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// Amount in minor units (e.g. cents). May be negative only in reports.
    pub amount: i64,
    /// The currency the amount is in.
    pub currency: Currency,
}

impl Money {
    /// `amount` minor units of `currency`.
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Nothing, in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self {
            amount: 0,
            currency,
        }
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount == 0
    }

    /// `self + other`; fails on different currencies or overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.combine(other, i64::checked_add)
    }

    /// `self - other`; fails on different currencies or overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.combine(other, i64::checked_sub)
    }

    /// `op` on both amounts, in the one currency they must share.
    fn combine(self, other: Money, op: fn(i64, i64) -> Option<i64>) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = op(self.amount, other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// Multiply by an integer quantity.
    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// `self * basis_points / 10_000`, rounded half away from zero, in integers.
    pub fn percent_bps(self, basis_points: i64) -> Result<Money, MoneyError> {
        let product = i128::from(self.amount) * i128::from(basis_points);
        let half = if product >= 0 { 5_000 } else { -5_000 };
        let amount = (product + half) / 10_000;
        let amount = i64::try_from(amount).map_err(|_| MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_only_three_upper_case_letters() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Ok("EUR".to_owned())
        );
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(serde_json::from_str::<Currency>("\"E1R\"").is_err());
    }

    #[test]
    fn basis_points_round_half_away_from_zero() {
        let m = Money::new(1_005, Currency::EUR);
        assert_eq!(m.percent_bps(500).map(|m| m.amount), Ok(50)); // 50.25
        assert_eq!(
            Money::new(10, Currency::EUR)
                .percent_bps(5_000)
                .map(|m| m.amount),
            Ok(5)
        );
        assert_eq!(
            Money::new(-10, Currency::EUR)
                .percent_bps(5_000)
                .map(|m| m.amount),
            Ok(-5)
        );
        assert_eq!(
            Money::new(1, Currency::EUR)
                .percent_bps(5_000)
                .map(|m| m.amount),
            Ok(1)
        );
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let e = Money::new(1, Currency::EUR).checked_add(Money::new(1, Currency::USD));
        assert!(matches!(e, Err(MoneyError::CurrencyMismatch { .. })));
    }
}
