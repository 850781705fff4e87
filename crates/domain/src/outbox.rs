//! The outbox's one retry rule: after a failed attempt of an external effect (an email, a
//! webhook delivery), retry with exponential back-off, or park it for the operator once its
//! attempts are used up or the failure is permanent.

use crate::time::Timestamp;

/// The first pause, after one failure.
const FIRST_MS: i64 = 1_000;
/// The longest pause.
const LONGEST_MS: i64 = 3_600_000;

/// Pause before attempt `n + 1` after `n` failures: 1 s, 2 s, 4 s, … at most an hour.
pub fn backoff_ms(failures: u32) -> i64 {
    FIRST_MS
        .saturating_mul(1_i64 << failures.min(20))
        .min(LONGEST_MS)
}

/// What becomes of an item after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed {
    /// Its failures so far, this one included.
    pub failures: u32,
    /// When it is tried again (kept on a parked item too, for the record).
    pub retry_at: Timestamp,
    /// Whether it is parked: no more automatic attempts.
    pub parked: bool,
}

/// The item had failed `attempts` times before this failure at `now`; `attempts_max` (at
/// least 1) is how many attempts it gets; `permanent` failures (a message that cannot be
/// built) are parked at once.
pub fn after_failure(attempts: u32, attempts_max: u32, permanent: bool, now: Timestamp) -> Failed {
    let failures = attempts.saturating_add(1);
    Failed {
        failures,
        retry_at: Timestamp::from_unix_ms(now.unix_ms().saturating_add(backoff_ms(failures))),
        parked: permanent || failures >= attempts_max.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(11), 2_048_000);
        assert_eq!(backoff_ms(12), 3_600_000);
        assert_eq!(backoff_ms(u32::MAX), 3_600_000);
    }

    #[test]
    fn retried_until_the_last_attempt_then_parked() {
        let now = Timestamp::from_unix_ms(1_000_000);
        // (attempts before, max, permanent) → (failures, pause, parked)
        let table = [
            (0, 5, false, 1, 2_000, false),
            (3, 5, false, 4, 16_000, false),
            (4, 5, false, 5, 32_000, true),
            (9, 5, false, 10, 1_024_000, true),
            (0, 5, true, 1, 2_000, true),
            // A maximum of 0 still allows one attempt.
            (0, 0, false, 1, 2_000, true),
            (u32::MAX, 5, false, u32::MAX, 3_600_000, true),
        ];
        for (attempts, max, permanent, failures, pause, parked) in table {
            let got = after_failure(attempts, max, permanent, now);
            let want = Failed {
                failures,
                retry_at: Timestamp::from_unix_ms(now.unix_ms() + pause),
                parked,
            };
            assert_eq!(got, want, "{attempts} of {max}, permanent {permanent}");
        }
    }
}
