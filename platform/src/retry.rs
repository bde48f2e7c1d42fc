//! The one retry/back-off policy of every Ordertrail process: exponential
//! from a first delay, doubling per attempt, capped, with optional jitter.
//!
//! Database connects and migrations-in-waiting ([`crate::db`]), the schema
//! check ([`crate::process`]), the consumer runtime, the saga's retries and
//! the relay's reconnect and lease loops all take their delays from here, so
//! an outage is waited out the same way everywhere. Each caller keeps its own
//! first delay and cap; only the arithmetic lives here.

use std::time::Duration;

/// Doubling stops after this many attempts (2^10 times the first delay), so
/// the arithmetic never overflows whatever the attempt count.
const MAX_DOUBLINGS: u32 = 10;

/// Exponential back-off: `first * 2^attempt`, at most `max`, optionally
/// shortened by a random fraction (jitter) so that many processes that lost
/// the same dependency at the same moment do not all retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// Fraction (0..=1) of each delay that may be taken off at random.
    jitter: f64,
}

impl Backoff {
    /// From `first` (attempt 0), doubling per attempt, capped at `max`; no jitter.
    pub const fn exponential(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            jitter: 0.0,
        }
    }

    /// The platform's database back-off: from 200 ms, at most `max`.
    pub const fn database(max: Duration) -> Self {
        Self::exponential(Duration::from_millis(200), max)
    }

    /// The same policy with another cap.
    pub const fn with_max(self, max: Duration) -> Self {
        Self { max, ..self }
    }

    /// Take up to `fraction` (clamped to 0..=1) of every delay off at random.
    pub fn with_jitter(self, fraction: f64) -> Self {
        Self {
            jitter: if fraction.is_finite() {
                fraction.clamp(0.0, 1.0)
            } else {
                0.0
            },
            ..self
        }
    }

    /// The longest delay this policy waits.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The pause before retry number `attempt` (0-based): `first * 2^attempt`
    /// capped at `max`, minus the jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .first
            .saturating_mul(1u32 << attempt.min(MAX_DOUBLINGS))
            .min(self.max);
        if self.jitter > 0.0 {
            full.mul_f64(1.0 - self.jitter * rand::random::<f64>())
        } else {
            full
        }
    }

    /// Sleep for [`Backoff::delay`] of `attempt`.
    pub async fn sleep(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delays the database, relay and consumer copies used before they
    /// were folded in here: `200 ms * 2^min(attempt, 10)`, capped.
    fn old_200(attempt: u32, max: Duration) -> Duration {
        Duration::from_millis(200u64.saturating_mul(1 << attempt.min(10))).min(max)
    }

    /// The saga's copy: from 100 ms.
    fn old_100(attempt: u32, max: Duration) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1 << attempt.min(10))).min(max)
    }

    #[test]
    fn delays_are_those_of_the_copies_it_replaces() {
        for max in [
            Duration::from_secs(5),
            Duration::from_secs(10),
            Duration::MAX,
        ] {
            for attempt in [0, 1, 2, 3, 5, 9, 10, 11, 31, 32, 1_000, u32::MAX] {
                assert_eq!(
                    Backoff::database(max).delay(attempt),
                    old_200(attempt, max),
                    "{attempt} {max:?}"
                );
                assert_eq!(
                    Backoff::exponential(Duration::from_millis(100), max).delay(attempt),
                    old_100(attempt, max),
                    "{attempt} {max:?}"
                );
            }
        }
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::database(Duration::from_secs(5));
        let delays: Vec<u128> = (0..7).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(
            b.with_max(Duration::from_secs(1)).delay(9).as_millis(),
            1_000
        );
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_fraction() {
        let b = Backoff::database(Duration::from_secs(5)).with_jitter(0.5);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = b.delay(3);
            assert!(d <= Duration::from_millis(1_600), "{d:?}");
            assert!(d >= Duration::from_millis(800), "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 1, "jitter varies the delay");
        assert_eq!(
            Backoff::database(Duration::from_secs(5))
                .with_jitter(f64::NAN)
                .delay(1),
            Duration::from_millis(400)
        );
    }
}
