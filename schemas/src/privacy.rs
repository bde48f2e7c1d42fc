//! The one-way forms secrets take on the wire: events travel on Kafka to
//! every consuming team, so neither a drop-off code nor a card token is ever
//! written into one.
//!
//! - **Drop-off code** (the 4 digits the customer tells the rider): events
//!   carry `dropoff_code_hash` = `hmac-sha256:` + hex HMAC-SHA256 under a
//!   server secret ([`DropoffCodeKey`], `DROPOFF_CODE_KEY`) of
//!   `"dropoff-code\0" + delivery id + "\0" + code`. The code itself is derived
//!   from the same key and the delivery id ([`DropoffCodeKey::code_for`]), so
//!   the server can show it to the order's customer without storing it.
//!   Events written before this (version 1 of `DeliveryRequested`, with the
//!   code in clear) are upcast to `sha256:` + hex SHA-256 of the same message
//!   ([`legacy_dropoff_code_hash`]); nothing new is written in that form.
//! - **Card**: events carry an opaque payment-method reference
//!   ([`payment_method_ref`]: `pm_` + 32 hex digits of SHA-256 of the token),
//!   never the token. Only the payment provider resolves a reference.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::DeliveryId;

/// Prefix of a keyed drop-off code hash (every hash written today).
pub const KEYED_PREFIX: &str = "hmac-sha256:";
/// Prefix of a hash upcast from a version 1 event (the code was in clear).
pub const LEGACY_PREFIX: &str = "sha256:";

fn dropoff_message(delivery_id: DeliveryId, code: &str) -> Vec<u8> {
    let mut message = b"dropoff-code\0".to_vec();
    message.extend_from_slice(delivery_id.to_string().as_bytes());
    message.push(0);
    message.extend_from_slice(code.as_bytes());
    message
}

/// The server secret drop-off codes are derived from and hashed with.
/// `Debug` never shows it.
#[derive(Clone)]
pub struct DropoffCodeKey(Vec<u8>);

impl std::fmt::Debug for DropoffCodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DropoffCodeKey(..)")
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a drop-off code key needs at least {min} bytes, got {len}")]
pub struct DropoffCodeKeyTooShort {
    /// Length of the key given, bytes.
    pub len: usize,
    /// Shortest accepted length, bytes ([`DropoffCodeKey::MIN_LEN`]).
    pub min: usize,
}

impl DropoffCodeKey {
    /// Shortest accepted key.
    pub const MIN_LEN: usize = 16;

    /// The key that hashes drop-off codes; refused when shorter than [`Self::MIN_LEN`].
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, DropoffCodeKeyTooShort> {
        let key = key.into();
        if key.len() < Self::MIN_LEN {
            return Err(DropoffCodeKeyTooShort {
                len: key.len(),
                min: Self::MIN_LEN,
            });
        }
        Ok(Self(key))
    }

    /// A fixed key for tests and examples only: anyone can read it here.
    pub fn for_tests() -> Self {
        Self(b"ordertrail-test-dropoff-code-key".to_vec())
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return [0; 32],
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The delivery's 4-digit code: the first two bytes of
    /// HMAC(key, `"dropoff-code-value\0" + delivery id`) modulo 10 000, zero-padded.
    pub fn code_for(&self, delivery_id: DeliveryId) -> String {
        let mac = self.mac(&[b"dropoff-code-value\0", delivery_id.to_string().as_bytes()]);
        let code = u16::from_be_bytes([mac[0], mac[1]]) % 10_000;
        format!("{code:04}")
    }

    /// What an event stores for `code` of this delivery.
    pub fn hash(&self, delivery_id: DeliveryId, code: &str) -> String {
        let mac = self.mac(&[&dropoff_message(delivery_id, code)]);
        format!("{KEYED_PREFIX}{}", hex::encode(mac))
    }

    /// Every stored form `code` may have for this delivery (keyed, and the
    /// legacy form of events first written as version 1): a candidate code
    /// is right when one of these equals the stored hash.
    pub fn candidates(&self, delivery_id: DeliveryId, code: &str) -> Vec<String> {
        vec![
            self.hash(delivery_id, code),
            legacy_dropoff_code_hash(delivery_id, code),
        ]
    }
}

/// The form a version 1 `DeliveryRequested` (code in clear) is upcast to.
pub fn legacy_dropoff_code_hash(delivery_id: DeliveryId, code: &str) -> String {
    let digest = Sha256::digest(dropoff_message(delivery_id, code));
    format!("{LEGACY_PREFIX}{}", hex::encode(digest))
}

/// Prefix of every payment-method reference.
pub const PAYMENT_METHOD_REF_PREFIX: &str = "pm_";

/// The opaque reference events carry for a card token: `pm_` + the first
/// 32 hex digits of SHA-256(`"payment-method\0" + token`). Provider tokens
/// are random, so the reference reveals nothing; the provider resolves it.
pub fn payment_method_ref(card_token: &str) -> String {
    let digest = Sha256::digest([b"payment-method\0".as_slice(), card_token.as_bytes()].concat());
    format!("{PAYMENT_METHOD_REF_PREFIX}{}", &hex::encode(digest)[..32])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn codes_are_four_digits_and_hashes_depend_on_key_delivery_and_code() {
        let key = DropoffCodeKey::for_tests();
        let d = DeliveryId(Uuid::from_u128(7));
        let code = key.code_for(d);
        assert_eq!(code.len(), 4);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        let hash = key.hash(d, &code);
        assert!(hash.starts_with(KEYED_PREFIX));
        assert_ne!(hash, key.hash(d, "0000x"));
        assert_ne!(hash, key.hash(DeliveryId(Uuid::from_u128(8)), &code));
        let other = DropoffCodeKey::new(b"another-key-of-16-bytes".to_vec()).unwrap();
        assert_ne!(hash, other.hash(d, &code));
        assert!(key.candidates(d, &code).contains(&hash));
        assert!(
            key.candidates(d, &code)
                .contains(&legacy_dropoff_code_hash(d, &code))
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(DropoffCodeKey::new(b"short".to_vec()).is_err());
    }

    #[test]
    fn payment_method_refs_are_opaque_and_stable() {
        let r = payment_method_ref("tok_visa");
        assert!(r.starts_with("pm_"));
        assert_eq!(r.len(), 35);
        assert!(!r.contains("visa"));
        assert_eq!(r, payment_method_ref("tok_visa"));
        assert_ne!(r, payment_method_ref("tok_declined"));
    }
}
