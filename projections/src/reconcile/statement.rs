//! The provider statement: one CSV line per provider operation.
//!
//! ```text
//! operation,provider_reference,payment_id,amount_minor,currency,fee_minor,occurred_at
//! authorization,sim_auth_5d0c…,5d0c…,2599,EUR,0,2026-03-14T12:00:01.123456Z
//! capture,sim_auth_5d0c…,5d0c…,2599,EUR,61,2026-03-14T12:41:09.000001Z
//! ```
//!
//! | column | meaning |
//! |---|---|
//! | `operation` | `authorization`, `capture`, `void` or `refund` |
//! | `provider_reference` | the provider's id: the authorization's for authorization, capture and void; the refund's own for a refund |
//! | `payment_id` | our reference given to the provider (the payment id) |
//! | `amount_minor` | integer minor units of `currency` (authorized, captured, released or refunded) |
//! | `currency` | ISO 4217 |
//! | `fee_minor` | the provider's fee for this operation, minor units of `currency` (fees are charged per operation, so they travel on the operation's line) |
//! | `occurred_at` | RFC 3339, UTC |
//!
//! The header line is required and exact. A field may be quoted (`"…"`, with
//! `""` for a quote) like any CSV export; a real provider's export maps onto
//! these seven columns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The header line.
pub const HEADER: &str =
    "operation,provider_reference,payment_id,amount_minor,currency,fee_minor,occurred_at";

/// Operations a statement may list.
pub const OPERATIONS: [&str; 4] = ["authorization", "capture", "void", "refund"];

/// One provider operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StatementLine {
    pub operation: String,
    pub provider_reference: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub fee_minor: i64,
    pub occurred_at: DateTime<Utc>,
}

/// A statement that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider statement line {line}: {reason}")]
pub struct StatementError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// A field as CSV: quoted when it holds a comma, quote or line break.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Split one CSV line into fields (RFC 4180 quoting within the line).
fn split(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '"') => return None,
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// Read a statement.
pub fn parse(text: &str) -> Result<Vec<StatementLine>, StatementError> {
    let mut lines = text.lines().enumerate();
    let err = |line: usize, reason: String| StatementError {
        line: line + 1,
        reason,
    };
    match lines.next() {
        Some((_, h)) if h.trim_end() == HEADER => {}
        _ => return Err(err(0, format!("the header must be `{HEADER}`"))),
    }
    let mut out = Vec::new();
    for (n, raw) in lines {
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let f = split(raw).ok_or_else(|| err(n, "unbalanced quotes".into()))?;
        let [
            operation,
            provider_reference,
            payment_id,
            amount,
            currency,
            fee,
            occurred_at,
        ] = <[String; 7]>::try_from(f)
            .map_err(|f| err(n, format!("{} fields, expected 7", f.len())))?;
        if !OPERATIONS.contains(&operation.as_str()) {
            return Err(err(n, format!("unknown operation {operation:?}")));
        }
        let int = |what: &str, v: &str| {
            v.parse::<i64>().map_err(|_| {
                err(
                    n,
                    format!("{what} {v:?} is not an integer amount of minor units"),
                )
            })
        };
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(err(n, format!("currency {currency:?} is not ISO 4217")));
        }
        let occurred_at = DateTime::parse_from_rfc3339(&occurred_at)
            .map_err(|_| err(n, format!("occurred_at {occurred_at:?} is not RFC 3339")))?
            .with_timezone(&Utc);
        out.push(StatementLine {
            amount_minor: int("amount_minor", &amount)?,
            fee_minor: int("fee_minor", &fee)?,
            operation,
            provider_reference,
            payment_id,
            currency,
            occurred_at,
        });
    }
    Ok(out)
}

/// Write a statement (header included).
pub fn to_csv(lines: &[StatementLine]) -> String {
    let mut out = String::with_capacity(64 * (lines.len() + 1));
    out.push_str(HEADER);
    out.push('\n');
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            csv_field(&l.operation),
            csv_field(&l.provider_reference),
            csv_field(&l.payment_id),
            l.amount_minor,
            csv_field(&l.currency),
            l.fee_minor,
            l.occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_round_trips_and_bad_lines_name_their_number() {
        let line = StatementLine {
            operation: "capture".into(),
            provider_reference: "sim_auth_a,\"b\"".into(),
            payment_id: "p1".into(),
            amount_minor: 2599,
            currency: "EUR".into(),
            fee_minor: 61,
            occurred_at: "2026-03-14T12:41:09.000001Z".parse().unwrap(),
        };
        let csv = to_csv(std::slice::from_ref(&line));
        assert_eq!(parse(&csv).unwrap(), vec![line]);
        let bad = format!("{HEADER}\ncapture,r,p,12.5,EUR,0,2026-03-14T12:00:00Z\n");
        assert_eq!(parse(&bad).unwrap_err().line, 2);
        assert_eq!(parse("nope\n").unwrap_err().line, 1);
        let short = format!("{HEADER}\ncapture,r,p\n");
        assert!(parse(&short).unwrap_err().reason.contains("3 fields"));
    }
}
