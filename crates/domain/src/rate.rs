//! Rate limits: requests, input tokens and output tokens per minute, for an org and for
//! each of its keys. Pure: the shell keeps one [`Buckets`] per org and per key and asks
//! [`admit`] before a call is held; 429 is never used for billing.
//!
//! Each dimension is a token bucket that holds a minute's allowance and refills
//! continuously (`limit` per 60,000 ms), counted in integer units of 1/60,000 of a token so
//! nothing is rounded: a full bucket is `limit × 60,000` units, one ms refills `limit` units,
//! one token (or request) takes 60,000. A bucket starts full, so a burst of a whole minute's
//! allowance passes at once, as the providers' limits do. A call is admitted only if every
//! limited dimension of every scope has room; then each takes its share, and a refused call
//! takes nothing. Output tokens are taken at the call's most (its `max_tokens`), and what it
//! did not use is given back when it settles ([`give_back`]).

use crate::Timestamp;

/// The largest per-minute limit accepted.
pub const PER_MINUTE_MAX: u64 = 1_000_000_000;

/// Milliseconds in the window every limit is stated over.
const WINDOW_MS: u64 = 60_000;

/// One scope's limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute (cache reads and writes included).
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute.
    pub output_tokens_per_minute: Option<u64>,
}

impl RateLimits {
    /// No limit at all.
    pub fn is_unlimited(&self) -> bool {
        Dimension::ALL.iter().all(|d| self.get(*d).is_none())
    }

    /// The limit of `dimension`.
    pub fn get(&self, dimension: Dimension) -> Option<u64> {
        match dimension {
            Dimension::Requests => self.requests_per_minute,
            Dimension::InputTokens => self.input_tokens_per_minute,
            Dimension::OutputTokens => self.output_tokens_per_minute,
        }
    }

    /// In words, for pages and the CLI: `60 requests, 8000 output tokens a minute`, or `none`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = Dimension::ALL
            .iter()
            .filter_map(|d| self.get(*d).map(|n| format!("{n} {}", d.noun())))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            format!("{} a minute", parts.join(", "))
        }
    }

    /// The first limit outside 1..=[`PER_MINUTE_MAX`], by its field name.
    pub fn invalid_field(&self) -> Option<&'static str> {
        Dimension::ALL
            .into_iter()
            .find(|d| {
                self.get(*d)
                    .is_some_and(|limit| limit == 0 || limit > PER_MINUTE_MAX)
            })
            .map(Dimension::field)
    }
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    /// Requests.
    Requests,
    /// Input tokens.
    InputTokens,
    /// Output tokens.
    OutputTokens,
}

impl Dimension {
    /// Every dimension, in the order [`Buckets`] keeps them.
    pub const ALL: [Dimension; 3] = [
        Dimension::Requests,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];

    fn index(self) -> usize {
        match self {
            Dimension::Requests => 0,
            Dimension::InputTokens => 1,
            Dimension::OutputTokens => 2,
        }
    }

    /// The limit's field name in the API.
    pub fn field(self) -> &'static str {
        match self {
            Dimension::Requests => "requests_per_minute",
            Dimension::InputTokens => "input_tokens_per_minute",
            Dimension::OutputTokens => "output_tokens_per_minute",
        }
    }

    /// How people call it.
    pub fn noun(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::InputTokens => "input tokens",
            Dimension::OutputTokens => "output tokens",
        }
    }
}

/// What one call asks for: one request, its input tokens (as estimated before it runs) and
/// its most output tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens at most.
    pub output_tokens: u64,
}

impl Ask {
    fn amount(&self, dimension: Dimension) -> u64 {
        match dimension {
            Dimension::Requests => 1,
            Dimension::InputTokens => self.input_tokens,
            Dimension::OutputTokens => self.output_tokens,
        }
    }
}

/// One scope's buckets: the units taken and not yet refilled, per dimension, as of `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    taken: [u64; 3],
    at: Timestamp,
}

impl Buckets {
    /// As of `now`: what refilled since `at` is no longer taken.
    fn refilled(self, limits: &RateLimits, now: Timestamp) -> Buckets {
        let elapsed = u64::try_from(now.unix_ms().saturating_sub(self.at.unix_ms())).unwrap_or(0);
        let mut taken = self.taken;
        for dimension in Dimension::ALL {
            let i = dimension.index();
            taken[i] = match limits.get(dimension) {
                Some(limit) => taken[i].saturating_sub(limit.saturating_mul(elapsed)),
                None => 0,
            };
        }
        Buckets {
            taken,
            at: if now > self.at { now } else { self.at },
        }
    }

    /// Nothing taken: forgetting these buckets changes nothing.
    pub fn is_full(&self) -> bool {
        self.taken == [0; 3]
    }
}

/// Where one limited dimension stands after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Its limit per minute.
    pub limit: u64,
    /// What is left now (whole tokens or requests).
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// Why a call is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The dimension out of room (the one that frees up last, when several are).
    pub dimension: Dimension,
    /// Milliseconds until the call would fit; `None` if it never can (it asks for more than
    /// a whole minute's allowance).
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    /// Whether this refusal frees up later than `seen` (one that never frees up is latest):
    /// of several, the one a caller must wait for.
    pub fn frees_later_than(self, seen: Option<Refusal>) -> bool {
        match (seen, self.retry_after_ms) {
            (None, _) | (Some(_), None) => true,
            (Some(seen), Some(ms)) => seen.retry_after_ms.is_some_and(|s| ms > s),
        }
    }
}

/// Whether `buckets` are full again at `now`: forgetting them changes nothing.
pub fn is_idle(buckets: Buckets, limits: &RateLimits, now: Timestamp) -> bool {
    buckets.refilled(limits, now).is_full()
}

/// Decides one call against one scope's limits: the buckets after it if it fits.
pub fn admit(
    buckets: Buckets,
    limits: &RateLimits,
    ask: Ask,
    now: Timestamp,
) -> Result<Buckets, Refusal> {
    let mut next = buckets.refilled(limits, now);
    let mut refusal: Option<Refusal> = None;
    for dimension in Dimension::ALL {
        let Some(limit) = limits.get(dimension) else {
            continue;
        };
        let i = dimension.index();
        let capacity = limit * WINDOW_MS;
        let wanted = ask.amount(dimension).saturating_mul(WINDOW_MS);
        let after = next.taken[i].saturating_add(wanted);
        if after <= capacity {
            next.taken[i] = after;
            continue;
        }
        let this = Refusal {
            dimension,
            retry_after_ms: (wanted <= capacity).then(|| (after - capacity).div_ceil(limit)),
        };
        if this.frees_later_than(refusal) {
            refusal = Some(this);
        }
    }
    match refusal {
        Some(refusal) => Err(refusal),
        None => Ok(next),
    }
}

/// Gives back what a call took and did not use (its output below its most, its input below
/// the estimate), never beyond a full bucket.
pub fn give_back(buckets: Buckets, limits: &RateLimits, unused: Ask, now: Timestamp) -> Buckets {
    let mut next = buckets.refilled(limits, now);
    for dimension in [Dimension::InputTokens, Dimension::OutputTokens] {
        let i = dimension.index();
        let units = unused.amount(dimension).saturating_mul(WINDOW_MS);
        next.taken[i] = next.taken[i].saturating_sub(units);
    }
    next
}

/// Where `dimension` stands in `buckets` at `now`, if it is limited.
pub fn standing(
    buckets: Buckets,
    limits: &RateLimits,
    dimension: Dimension,
    now: Timestamp,
) -> Option<Standing> {
    let limit = limits.get(dimension)?;
    let taken = buckets.refilled(limits, now).taken[dimension.index()];
    let capacity = limit * WINDOW_MS;
    Some(Standing {
        limit,
        remaining: capacity.saturating_sub(taken) / WINDOW_MS,
        reset_ms: taken.div_ceil(limit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms)
    }

    const RPM_3: RateLimits = RateLimits {
        requests_per_minute: Some(3),
        input_tokens_per_minute: None,
        output_tokens_per_minute: None,
    };

    #[test]
    fn a_full_minute_passes_at_once_then_one_request_per_share_of_the_minute() {
        let mut b = Buckets::default();
        for _ in 0..3 {
            b = admit(b, &RPM_3, Ask::default(), at(1_000)).expect("within the burst");
        }
        let refused = admit(b, &RPM_3, Ask::default(), at(1_000)).unwrap_err();
        assert_eq!(refused.dimension, Dimension::Requests);
        // One request refills every 20 s.
        assert_eq!(refused.retry_after_ms, Some(20_000));
        assert!(admit(b, &RPM_3, Ask::default(), at(20_999)).is_err());
        assert!(admit(b, &RPM_3, Ask::default(), at(21_000)).is_ok());
        let s = standing(b, &RPM_3, Dimension::Requests, at(1_000)).expect("limited");
        assert_eq!((s.limit, s.remaining, s.reset_ms), (3, 0, 60_000));
    }

    #[test]
    fn tokens_are_counted_to_the_token_and_a_refusal_takes_nothing() {
        let limits = RateLimits {
            requests_per_minute: Some(100),
            input_tokens_per_minute: Some(1_000),
            output_tokens_per_minute: Some(7),
        };
        let ask = Ask {
            input_tokens: 999,
            output_tokens: 7,
        };
        let b = admit(Buckets::default(), &limits, ask, at(0)).expect("fits exactly");
        let refused = admit(b, &limits, ask, at(0)).unwrap_err();
        // Output frees up last: 7 tokens at 7 per minute, a whole minute; input at 1,000 per
        // minute needs 59.94 s for 999 tokens, rounded up to the millisecond.
        assert_eq!(refused.dimension, Dimension::OutputTokens);
        assert_eq!(refused.retry_after_ms, Some(60_000));
        let requests = standing(b, &limits, Dimension::Requests, at(0)).expect("limited");
        assert_eq!(requests.remaining, 99, "the refused call took no request");
        let input = standing(b, &limits, Dimension::InputTokens, at(0)).expect("limited");
        assert_eq!((input.remaining, input.reset_ms), (1, 59_940));
    }

    #[test]
    fn a_call_larger_than_a_minute_never_fits() {
        let limits = RateLimits {
            input_tokens_per_minute: Some(500),
            ..RateLimits::default()
        };
        let ask = Ask {
            input_tokens: 501,
            output_tokens: 0,
        };
        let refused = admit(Buckets::default(), &limits, ask, at(0)).unwrap_err();
        assert_eq!(refused.retry_after_ms, None);
    }

    #[test]
    fn unused_output_is_given_back_up_to_a_full_bucket() {
        let limits = RateLimits {
            output_tokens_per_minute: Some(1_000),
            ..RateLimits::default()
        };
        let ask = Ask {
            input_tokens: 0,
            output_tokens: 800,
        };
        let b = admit(Buckets::default(), &limits, ask, at(0)).expect("fits");
        assert!(admit(b, &limits, ask, at(0)).is_err());
        let b = give_back(
            b,
            &limits,
            Ask {
                input_tokens: 0,
                output_tokens: 750,
            },
            at(0),
        );
        let left = standing(b, &limits, Dimension::OutputTokens, at(0)).expect("limited");
        assert_eq!(left.remaining, 950);
        let b = give_back(
            b,
            &limits,
            Ask {
                input_tokens: 0,
                output_tokens: 5_000,
            },
            at(0),
        );
        assert!(b.is_full());
    }

    #[test]
    fn limits_outside_the_range_are_named() {
        let zero = RateLimits {
            output_tokens_per_minute: Some(0),
            ..RateLimits::default()
        };
        assert_eq!(zero.invalid_field(), Some("output_tokens_per_minute"));
        let huge = RateLimits {
            requests_per_minute: Some(PER_MINUTE_MAX + 1),
            ..RateLimits::default()
        };
        assert_eq!(huge.invalid_field(), Some("requests_per_minute"));
        assert_eq!(RateLimits::default().invalid_field(), None);
        assert_eq!(RateLimits::default().describe(), "none");
        let some = RateLimits {
            requests_per_minute: Some(60),
            output_tokens_per_minute: Some(8_000),
            ..RateLimits::default()
        };
        assert_eq!(some.describe(), "60 requests, 8000 output tokens a minute");
        assert!(RateLimits::default().is_unlimited());
    }

    proptest::proptest! {
        /// However calls arrive, what is admitted in any minute-long run of time never
        /// exceeds one minute's allowance plus the burst (two minutes' worth at most).
        #[test]
        fn admitted_never_exceeds_the_allowance(
            limit in 1u64..50,
            gaps in proptest::collection::vec(0i64..5_000, 1..200),
        ) {
            let limits = RateLimits { requests_per_minute: Some(limit), ..RateLimits::default() };
            let (mut b, mut now, mut admitted) = (Buckets::default(), 0i64, Vec::new());
            for gap in gaps {
                now += gap;
                if let Ok(next) = admit(b, &limits, Ask::default(), at(now)) {
                    b = next;
                    admitted.push(now);
                }
            }
            for (i, start) in admitted.iter().enumerate() {
                let within = admitted[i..].iter().take_while(|t| **t < start + 60_000).count();
                proptest::prop_assert!(within as u64 <= 2 * limit);
            }
        }
    }
}
