//! Auto-reload: when to charge the saved card, how much, and what a failure leads to.
//!
//! The shell evaluates [`decide`] after every balance decrease of an org with auto-reload on
//! and whenever its settings change, with the state read inside the transaction that would
//! create the attempt (the database's unique index is what keeps it to one attempt in
//! flight; this module only says whether one is wanted). Pure: the time is passed in.
//!
//! Rules, checked in this order (the first that applies is the answer):
//! 1. auto-reload is off → [`Skip::Disabled`];
//! 2. the available balance is above the threshold → [`Skip::AboveThreshold`] (a reload is
//!    wanted once the balance *reaches* the threshold: at or below it);
//! 3. a reload is already in flight (created, charging, or waiting for the customer's
//!    confirmation) → [`Skip::InFlight`];
//! 4. after a failure, not before its retry time → [`Skip::BackingOff`];
//! 5. not within the cooldown after the last attempt → [`Skip::CoolingDown`];
//! 6. the amount: the fixed amount, or what brings the available balance up to the target
//!    (rounded up to a whole cent, at least the minimum top-up, at most the maximum);
//! 7. the monthly limit counts this calendar month's (UTC) succeeded and in-flight reloads;
//!    what is left is charged if it is at least the minimum top-up (whole cents, rounded
//!    down), else → [`Skip::MonthlyLimitReached`].

use crate::money::Amount;
use crate::payment::{is_whole_cents, round_up_to_cent, CENT_MICROS};
use crate::time::Timestamp;

/// How much one reload adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadAmount {
    /// Always this much.
    Fixed(Amount),
    /// Enough to bring the available balance up to this.
    Target(Amount),
}

/// An org's auto-reload settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadSettings {
    /// Whether the card is charged automatically.
    pub enabled: bool,
    /// A reload is wanted when the available balance is at or below this.
    pub threshold: Amount,
    /// How much a reload adds.
    pub amount: ReloadAmount,
    /// Most charged by auto-reload in one calendar month (UTC).
    pub monthly_limit: Amount,
}

/// The bounds every payment must respect (the deployment's top-up limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentLimits {
    /// The smallest charge.
    pub amount_min: Amount,
    /// The largest charge.
    pub amount_max: Amount,
}

/// Why settings were refused: the field and a stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    /// The JSON field at fault.
    pub field: &'static str,
    /// A stable code.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

fn refuse(field: &'static str, code: &'static str, message: String) -> SettingsError {
    SettingsError {
        field,
        code,
        message,
    }
}

/// Checks settings against the limits. Disabled settings are checked too: turning
/// auto-reload on later must not need new numbers.
pub fn validate(settings: &ReloadSettings, limits: &PaymentLimits) -> Result<(), SettingsError> {
    if settings.threshold.is_negative() {
        return Err(refuse(
            "threshold",
            "parameter_invalid",
            "threshold must not be negative.".into(),
        ));
    }
    let within = |amount: Amount| amount >= limits.amount_min && amount <= limits.amount_max;
    let smallest_reload = match settings.amount {
        ReloadAmount::Fixed(amount) => {
            if !is_whole_cents(amount) {
                return Err(refuse(
                    "amount",
                    "amount_not_whole_cents",
                    "amount must be a whole number of cents.".into(),
                ));
            }
            if !within(amount) {
                return Err(refuse(
                    "amount",
                    "amount_out_of_range",
                    "amount must be within the top-up limits.".into(),
                ));
            }
            amount
        }
        ReloadAmount::Target(target) => {
            if target <= settings.threshold {
                return Err(refuse(
                    "target",
                    "target_not_above_threshold",
                    "target must be above threshold.".into(),
                ));
            }
            let gap = target
                .checked_sub(settings.threshold)
                .and_then(round_up_to_cent)
                .ok_or_else(|| {
                    refuse("target", "amount_overflow", "target is too large.".into())
                })?;
            if gap > limits.amount_max {
                return Err(refuse(
                    "target",
                    "amount_out_of_range",
                    "target minus threshold must be at most the largest top-up.".into(),
                ));
            }
            gap.max(limits.amount_min)
        }
    };
    if settings.monthly_limit < smallest_reload {
        return Err(refuse(
            "monthly_limit",
            "monthly_limit_below_one_reload",
            "monthly_limit must allow at least one reload.".into(),
        ));
    }
    Ok(())
}

/// What is known about an org's reloads when deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadState {
    /// The org's available balance.
    pub available: Amount,
    /// Whether a reload is created, charging or waiting for the customer.
    pub in_flight: bool,
    /// Succeeded and in-flight reloads of the current calendar month (UTC).
    pub charged_this_month: Amount,
    /// When the last reload attempt was created.
    pub last_attempt_at: Option<Timestamp>,
    /// After a failure: not before this.
    pub retry_at: Option<Timestamp>,
    /// A call was refused for lack of credits and access is off: reload whatever the
    /// threshold says (a threshold of 0, or one below a single call's cost, would otherwise
    /// leave a card that works unused while calls are refused).
    pub refused: bool,
}

/// Timing of reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadPolicy {
    /// Least time between two attempts.
    pub cooldown_ms: i64,
    /// The payment limits.
    pub limits: PaymentLimits,
}

/// Why no reload is made now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Auto-reload is off.
    Disabled,
    /// The balance is above the threshold.
    AboveThreshold,
    /// A reload is already in flight.
    InFlight,
    /// A failed reload is retried no earlier than this.
    BackingOff {
        /// When.
        until: Timestamp,
    },
    /// Too soon after the last attempt.
    CoolingDown {
        /// When the cooldown ends.
        until: Timestamp,
    },
    /// The monthly limit leaves less than the smallest top-up.
    MonthlyLimitReached,
}

/// The answer of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Charge this much (whole cents, within the limits).
    Charge(Amount),
    /// Make no reload now.
    Skip(Skip),
}

/// Whether to reload now, and how much (the rules are in the module documentation).
pub fn decide(
    settings: &ReloadSettings,
    state: &ReloadState,
    policy: &ReloadPolicy,
    now: Timestamp,
) -> Decision {
    if !settings.enabled {
        return Decision::Skip(Skip::Disabled);
    }
    if state.available > settings.threshold && !state.refused {
        return Decision::Skip(Skip::AboveThreshold);
    }
    if state.in_flight {
        return Decision::Skip(Skip::InFlight);
    }
    if let Some(until) = state.retry_at.filter(|at| *at > now) {
        return Decision::Skip(Skip::BackingOff { until });
    }
    if let Some(last) = state.last_attempt_at {
        let until = last.plus_ms(policy.cooldown_ms);
        if until > now {
            return Decision::Skip(Skip::CoolingDown { until });
        }
    }
    let limits = policy.limits;
    let wanted = match settings.amount {
        ReloadAmount::Fixed(amount) => amount,
        ReloadAmount::Target(target) => target
            .checked_sub(state.available)
            .and_then(round_up_to_cent)
            .unwrap_or(limits.amount_max),
    }
    .max(limits.amount_min)
    .min(limits.amount_max);
    let left = settings
        .monthly_limit
        .checked_sub(state.charged_this_month)
        .unwrap_or(Amount::ZERO);
    let left = Amount::from_micros(left.micros() - left.micros().rem_euclid(CENT_MICROS));
    let amount = wanted.min(left);
    if amount < limits.amount_min || !amount.is_positive() {
        return Decision::Skip(Skip::MonthlyLimitReached);
    }
    Decision::Charge(amount)
}

impl Skip {
    /// Why no reload was made, as a sentence for the org's "access turned off" email, when
    /// the skip leaves a refused org off for now (`None`: a reload is on its way, or nothing
    /// was wanted).
    pub fn refused_reason(self) -> Option<&'static str> {
        match self {
            Skip::Disabled | Skip::AboveThreshold | Skip::InFlight => None,
            Skip::BackingOff { .. } => {
                Some("Auto-reload could not charge your card recently and is waiting before it tries again.")
            }
            Skip::CoolingDown { .. } => {
                Some("Auto-reload added credits a moment ago and waits a little before charging your card again.")
            }
            Skip::MonthlyLimitReached => Some("Auto-reload reached its monthly limit."),
        }
    }
}

/// Back-off after failed reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Wait after the first failure; doubled after each further one.
    pub backoff_ms: i64,
    /// The longest wait.
    pub backoff_ms_max: i64,
    /// Consecutive failures after which auto-reload turns itself off.
    pub failures_max: u32,
}

/// What a failed reload leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again no earlier than this.
    RetryAt(Timestamp),
    /// Turn auto-reload off (and say so).
    Disable,
}

/// The consequence of the `failures`-th consecutive failure (counting this one, from 1).
pub fn after_failure(failures: u32, policy: &FailurePolicy, now: Timestamp) -> AfterFailure {
    if failures >= policy.failures_max {
        return AfterFailure::Disable;
    }
    let doublings = failures.saturating_sub(1).min(30);
    let wait = policy
        .backoff_ms
        .checked_mul(1_i64 << doublings)
        .unwrap_or(i64::MAX)
        .min(policy.backoff_ms_max);
    AfterFailure::RetryAt(now.plus_ms(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Amount {
        Amount::parse_with(text, crate::money::Sign::Signed).expect("amount")
    }

    fn limits() -> PaymentLimits {
        PaymentLimits {
            amount_min: usd("5"),
            amount_max: usd("1000"),
        }
    }

    fn fixed(threshold: &str, amount: &str, monthly: &str) -> ReloadSettings {
        ReloadSettings {
            enabled: true,
            threshold: usd(threshold),
            amount: ReloadAmount::Fixed(usd(amount)),
            monthly_limit: usd(monthly),
        }
    }

    fn target(threshold: &str, target: &str, monthly: &str) -> ReloadSettings {
        ReloadSettings {
            amount: ReloadAmount::Target(usd(target)),
            ..fixed(threshold, "5", monthly)
        }
    }

    #[test]
    fn validate_table() {
        let ok = |s: ReloadSettings| assert_eq!(validate(&s, &limits()), Ok(()), "{s:?}");
        let bad = |s: ReloadSettings, field: &str, code: &str| {
            let error = validate(&s, &limits()).expect_err("refused");
            assert_eq!((error.field, error.code), (field, code), "{s:?}");
        };
        ok(fixed("10", "20", "100"));
        ok(fixed("0", "5", "5"));
        ok(fixed("10", "1000", "1000"));
        ok(target("10", "50", "40"));
        ok(target("10", "12", "5"));
        bad(fixed("-1", "20", "100"), "threshold", "parameter_invalid");
        bad(fixed("10", "4.99", "100"), "amount", "amount_out_of_range");
        bad(
            fixed("10", "1000.01", "2000"),
            "amount",
            "amount_out_of_range",
        );
        bad(
            fixed("10", "20.001", "100"),
            "amount",
            "amount_not_whole_cents",
        );
        bad(
            fixed("10", "20", "19.99"),
            "monthly_limit",
            "monthly_limit_below_one_reload",
        );
        bad(
            target("10", "10", "100"),
            "target",
            "target_not_above_threshold",
        );
        bad(
            target("10", "9", "100"),
            "target",
            "target_not_above_threshold",
        );
        bad(
            target("10", "1010.01", "2000"),
            "target",
            "amount_out_of_range",
        );
        bad(
            target("10", "50", "39.99"),
            "monthly_limit",
            "monthly_limit_below_one_reload",
        );
        bad(
            target("10", "12", "4.99"),
            "monthly_limit",
            "monthly_limit_below_one_reload",
        );
    }

    fn state(available: &str) -> ReloadState {
        ReloadState {
            available: usd(available),
            in_flight: false,
            charged_this_month: Amount::ZERO,
            last_attempt_at: None,
            retry_at: None,
            refused: false,
        }
    }

    fn policy() -> ReloadPolicy {
        ReloadPolicy {
            cooldown_ms: 60_000,
            limits: limits(),
        }
    }

    const NOW: Timestamp = Timestamp::from_unix_ms(1_700_000_000_000);

    #[test]
    fn decide_table() {
        let charge = |a: &str| Decision::Charge(usd(a));
        let skip = Decision::Skip;
        let cases: Vec<(&str, ReloadSettings, ReloadState, Decision)> = vec![
            (
                "below threshold",
                fixed("10", "20", "100"),
                state("9.99"),
                charge("20"),
            ),
            (
                "at threshold",
                fixed("10", "20", "100"),
                state("10"),
                charge("20"),
            ),
            (
                "above threshold",
                fixed("10", "20", "100"),
                state("10.000001"),
                skip(Skip::AboveThreshold),
            ),
            (
                "negative balance",
                fixed("10", "20", "100"),
                state("-3"),
                charge("20"),
            ),
            (
                "disabled",
                ReloadSettings {
                    enabled: false,
                    ..fixed("10", "20", "100")
                },
                state("0"),
                skip(Skip::Disabled),
            ),
            (
                "a refused call, above a threshold of 0",
                fixed("0", "20", "100"),
                ReloadState {
                    refused: true,
                    ..state("0.73")
                },
                Decision::Charge(usd("20")),
            ),
            (
                "a refused call, monthly limit used up",
                fixed("0", "20", "20"),
                ReloadState {
                    refused: true,
                    charged_this_month: usd("20"),
                    ..state("0.73")
                },
                skip(Skip::MonthlyLimitReached),
            ),
            (
                "in flight",
                fixed("10", "20", "100"),
                ReloadState {
                    in_flight: true,
                    ..state("1")
                },
                skip(Skip::InFlight),
            ),
            (
                "backing off",
                fixed("10", "20", "100"),
                ReloadState {
                    retry_at: Some(NOW.plus_ms(1)),
                    ..state("1")
                },
                skip(Skip::BackingOff {
                    until: NOW.plus_ms(1),
                }),
            ),
            (
                "retry time reached",
                fixed("10", "20", "100"),
                ReloadState {
                    retry_at: Some(NOW),
                    ..state("1")
                },
                charge("20"),
            ),
            (
                "cooling down",
                fixed("10", "20", "100"),
                ReloadState {
                    last_attempt_at: Some(NOW.plus_ms(-59_999)),
                    ..state("1")
                },
                skip(Skip::CoolingDown {
                    until: NOW.plus_ms(1),
                }),
            ),
            (
                "cooldown over",
                fixed("10", "20", "100"),
                ReloadState {
                    last_attempt_at: Some(NOW.plus_ms(-60_000)),
                    ..state("1")
                },
                charge("20"),
            ),
            (
                "target",
                target("10", "50", "100"),
                state("9.995"),
                charge("40.01"),
            ),
            (
                "target from below zero",
                target("10", "50", "100"),
                state("-2"),
                charge("52"),
            ),
            (
                "target at least the minimum",
                target("10", "12", "100"),
                state("10"),
                charge("5"),
            ),
            (
                "target at most the maximum",
                target("10", "1010", "5000"),
                state("-100"),
                charge("1000"),
            ),
            (
                "monthly limit trims",
                fixed("10", "20", "100"),
                ReloadState {
                    charged_this_month: usd("85.005"),
                    ..state("1")
                },
                charge("14.99"),
            ),
            (
                "monthly limit reached",
                fixed("10", "20", "100"),
                ReloadState {
                    charged_this_month: usd("95.01"),
                    ..state("1")
                },
                skip(Skip::MonthlyLimitReached),
            ),
            (
                "monthly limit spent",
                fixed("10", "20", "100"),
                ReloadState {
                    charged_this_month: usd("120"),
                    ..state("1")
                },
                skip(Skip::MonthlyLimitReached),
            ),
        ];
        for (name, settings, state, expected) in cases {
            assert_eq!(
                decide(&settings, &state, &policy(), NOW),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn failures_back_off_then_disable() {
        let policy = FailurePolicy {
            backoff_ms: 1_000,
            backoff_ms_max: 3_000,
            failures_max: 4,
        };
        assert_eq!(
            after_failure(1, &policy, NOW),
            AfterFailure::RetryAt(NOW.plus_ms(1_000))
        );
        assert_eq!(
            after_failure(2, &policy, NOW),
            AfterFailure::RetryAt(NOW.plus_ms(2_000))
        );
        assert_eq!(
            after_failure(3, &policy, NOW),
            AfterFailure::RetryAt(NOW.plus_ms(3_000))
        );
        assert_eq!(after_failure(4, &policy, NOW), AfterFailure::Disable);
        assert_eq!(after_failure(40, &policy, NOW), AfterFailure::Disable);
        let huge = FailurePolicy {
            backoff_ms: i64::MAX / 2,
            backoff_ms_max: i64::MAX,
            failures_max: 100,
        };
        assert!(matches!(
            after_failure(50, &huge, NOW),
            AfterFailure::RetryAt(_)
        ));
    }

    proptest::proptest! {
        /// Whatever the state, a charge is within the limits, whole cents, never beyond the
        /// monthly limit, and only below the threshold with nothing in flight.
        #[test]
        fn a_charge_respects_every_bound(
            available in -1_000_000_000i64..2_000_000_000,
            threshold in 0i64..100_000_000,
            reload in 5_000_000i64..200_000_000,
            use_target: bool,
            monthly in 5_000_000i64..1_000_000_000,
            charged in 0i64..1_000_000_000,
            in_flight: bool,
        ) {
            let reload = reload - reload % CENT_MICROS;
            let settings = ReloadSettings {
                enabled: true,
                threshold: Amount::from_micros(threshold),
                amount: if use_target {
                    ReloadAmount::Target(Amount::from_micros(threshold + reload))
                } else {
                    ReloadAmount::Fixed(Amount::from_micros(reload))
                },
                monthly_limit: Amount::from_micros(monthly),
            };
            let state = ReloadState {
                available: Amount::from_micros(available),
                in_flight,
                charged_this_month: Amount::from_micros(charged),
                last_attempt_at: None,
                retry_at: None,
                refused: false,
            };
            if let Decision::Charge(amount) = decide(&settings, &state, &policy(), NOW) {
                proptest::prop_assert!(!in_flight);
                proptest::prop_assert!(available <= threshold);
                proptest::prop_assert!(is_whole_cents(amount));
                proptest::prop_assert!(amount >= limits().amount_min && amount <= limits().amount_max);
                proptest::prop_assert!(charged + amount.micros() <= monthly);
                if use_target {
                    // Never more than the target needs (beyond the minimum and a cent).
                    let needed = threshold + reload - available;
                    proptest::prop_assert!(amount.micros() < needed.max(5_000_000) + CENT_MICROS);
                }
            }
        }
    }
}
