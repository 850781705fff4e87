//! Spend limits: a cap on what an org (or one of its keys) may be charged in a calendar month
//! (UTC), counting what is charged and what calls in flight still hold.

use crate::money::Amount;

/// Whether a new hold of `amount` would take the period's usage (`charged` plus `reserved`
/// by open holds) past `cap`. A sum too large to add is past any cap.
pub fn hold_passes_limit(cap: Amount, charged: Amount, reserved: Amount, amount: Amount) -> bool {
    charged
        .checked_add(reserved)
        .and_then(|used| used.checked_add(amount))
        .is_none_or(|total| total > cap)
}

/// Whether the period's usage has reached `cap`, so that every metered call is refused until
/// the period ends (or the cap is raised).
pub fn limit_reached(cap: Amount, charged: Amount, reserved: Amount) -> bool {
    charged.checked_add(reserved).is_none_or(|used| used >= cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Amount {
        Amount::parse(text).unwrap()
    }

    #[test]
    fn limits_table() {
        // (cap, charged, reserved, hold) → (the hold passes the cap, the cap is reached)
        let table = [
            ("10.00", "4.00", "3.00", "2.99", false, false),
            ("10.00", "4.00", "3.00", "3.00", false, false),
            ("10.00", "4.00", "3.00", "3.000001", true, false),
            ("10.00", "7.00", "3.00", "0.000001", true, true),
            ("10.00", "10.50", "0", "0.000001", true, true),
            ("0", "0", "0", "0.000001", true, true),
        ];
        for (cap, charged, reserved, hold, passes, reached) in table {
            let (cap, charged, reserved) = (m(cap), m(charged), m(reserved));
            assert_eq!(
                hold_passes_limit(cap, charged, reserved, m(hold)),
                passes,
                "{hold}"
            );
            assert_eq!(
                limit_reached(cap, charged, reserved),
                reached,
                "{charged}+{reserved}"
            );
        }
        let huge = Amount::from_micros(i64::MAX);
        assert!(hold_passes_limit(m("10"), huge, huge, m("1")));
        assert!(limit_reached(m("10"), huge, huge));
    }
}
