//! Pricing: what one metered call costs, from its usage and the model's price version.
//!
//! Rounding rule. A call is one line item. Its exact cost is
//! `Σ tokens × price_per_million / 1_000_000 + request_fee`, computed in `i128` micro-units
//! × tokens; the sum is rounded **up** to a whole micro-unit **once**, at the end. So a call
//! never costs less than its exact price, and splitting the sum differently can never make
//! it cheaper or dearer by more than one micro-unit.
//!
//! Worst case (for holds). Before a call, its input may turn out to be cache writes (dearer
//! than plain input on Anthropic-style price books) or cache reads, so the worst case prices
//! every input token at the dearest of `input`, `cache_write` and `cache_read`.

use crate::money::Amount;
use crate::time::Timestamp;

/// Tokens in "per million tokens".
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;
/// Most tokens of one kind in one call the pricing accepts (10^12: far beyond any model's
/// context, and small enough that no product of tokens × price overflows `i128`).
pub const TOKENS_MAX: u64 = 1_000_000_000_000;
/// Longest model name.
pub const MODEL_LEN_MAX: usize = 128;

/// Prices of one model, per million tokens, plus an optional per-call fee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPrices {
    /// Per million input tokens.
    pub input: Amount,
    /// Per million output tokens.
    pub output: Amount,
    /// Per million tokens written to the prompt cache.
    pub cache_write: Amount,
    /// Per million tokens read from the prompt cache.
    pub cache_read: Amount,
    /// Charged once per call, whatever its usage.
    pub request_fee: Amount,
}

/// One version of a model's prices, in force from `effective_at` until the next version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceVersion {
    /// The version's id (`price_…`), recorded on holds so they settle at this version.
    pub id: String,
    /// The model it prices.
    pub model: String,
    /// When it takes effect.
    pub effective_at: Timestamp,
    /// The prices.
    pub prices: TokenPrices,
    /// The most output tokens a call may produce when the request does not say (the worst
    /// case of a hold placed without `max_output_tokens`).
    pub max_output_tokens: u64,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// What one call used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Plain input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
}

/// Why a cost could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A token count above [`TOKENS_MAX`].
    #[error("a token count is above {TOKENS_MAX}")]
    TooManyTokens,
    /// The cost does not fit an amount.
    #[error("the cost is too large")]
    Overflow,
}

/// The cost of `usage` at `prices`: one line item, rounded up once.
pub fn cost(prices: &TokenPrices, usage: &Usage) -> Result<Amount, PricingError> {
    let lines = [
        (usage.input_tokens, prices.input),
        (usage.output_tokens, prices.output),
        (usage.cache_write_tokens, prices.cache_write),
        (usage.cache_read_tokens, prices.cache_read),
    ];
    let mut scaled: i128 = 0;
    for (tokens, price) in lines {
        if tokens > TOKENS_MAX {
            return Err(PricingError::TooManyTokens);
        }
        // ≤ 10^12 × 9.2·10^18 per line: four lines stay far inside i128.
        scaled += i128::from(tokens) * i128::from(price.micros());
    }
    let tokens_cost = ceil_div(scaled, TOKENS_PER_PRICE_UNIT);
    let total = tokens_cost + i128::from(prices.request_fee.micros());
    i64::try_from(total)
        .map(Amount::from_micros)
        .map_err(|_| PricingError::Overflow)
}

/// The most a call of at most `input_tokens` in and `output_tokens` out can cost: every
/// input token priced at the dearest input rate (see the module docs).
pub fn worst_case(
    prices: &TokenPrices,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<Amount, PricingError> {
    let dearest_input = prices.input.max(prices.cache_write).max(prices.cache_read);
    let worst = TokenPrices {
        input: dearest_input,
        ..prices.clone()
    };
    cost(
        &worst,
        &Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        },
    )
}

/// The version in force at `at`: the latest whose `effective_at` is not after `at`.
/// `versions` may be in any order.
pub fn version_at(versions: &[PriceVersion], at: Timestamp) -> Option<&PriceVersion> {
    versions
        .iter()
        .filter(|version| version.effective_at <= at)
        .max_by_key(|version| (version.effective_at, version.created_at, &version.id))
}

/// Whether `model` is a name the price book accepts: 1 to [`MODEL_LEN_MAX`] characters
/// of letters, digits and `-._/:@`.
pub fn is_valid_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= MODEL_LEN_MAX
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/:@".contains(&b))
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator > 0 {
        quotient + 1
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prices(input: &str, output: &str, cache_write: &str, cache_read: &str) -> TokenPrices {
        TokenPrices {
            input: Amount::parse(input).unwrap(),
            output: Amount::parse(output).unwrap(),
            cache_write: Amount::parse(cache_write).unwrap(),
            cache_read: Amount::parse(cache_read).unwrap(),
            request_fee: Amount::ZERO,
        }
    }

    fn usage(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_write_tokens: cache_write,
            cache_read_tokens: cache_read,
        }
    }

    #[test]
    fn costs_table() {
        // (prices in/out/cw/cr per million, usage in/out/cw/cr, expected cost)
        let table = [
            (
                ("3.00", "15.00", "3.75", "0.30"),
                (1_000_000, 0, 0, 0),
                "3.00",
            ),
            (("3.00", "15.00", "3.75", "0.30"), (0, 1_000, 0, 0), "0.015"),
            (("3.00", "15.00", "3.75", "0.30"), (1, 0, 0, 0), "0.000003"),
            // 1 token at $0.30/M = 0.3 micro-units: rounded up to 1.
            (("3.00", "15.00", "3.75", "0.30"), (0, 0, 0, 1), "0.000001"),
            // Rounded once over the sum: 0.3 + 0.3 + 0.3 = 0.9 → 1, not 3.
            (("0.30", "0.30", "0.30", "0.30"), (1, 1, 0, 1), "0.000001"),
            (
                ("3.00", "15.00", "3.75", "0.30"),
                (1200, 350, 100, 2000),
                "0.009825",
            ),
            (("0", "0", "0", "0"), (5, 5, 5, 5), "0.00"),
            (("3.00", "15.00", "3.75", "0.30"), (0, 0, 0, 0), "0.00"),
        ];
        for (p, u, expected) in table {
            let got = cost(&prices(p.0, p.1, p.2, p.3), &usage(u.0, u.1, u.2, u.3)).unwrap();
            assert_eq!(got.to_string(), expected, "prices {p:?} usage {u:?}");
        }
    }

    #[test]
    fn request_fee_is_added_once() {
        let mut p = prices("1.00", "1.00", "1.00", "1.00");
        p.request_fee = Amount::parse("0.01").unwrap();
        assert_eq!(
            cost(&p, &usage(1, 0, 0, 0)).unwrap().to_string(),
            "0.010001"
        );
    }

    #[test]
    fn worst_case_prices_input_at_the_dearest_rate() {
        let p = prices("3.00", "15.00", "3.75", "0.30");
        assert_eq!(worst_case(&p, 1_000_000, 0).unwrap().to_string(), "3.75");
        assert_eq!(
            worst_case(&p, 1_000_000, 1_000_000).unwrap().to_string(),
            "18.75"
        );
    }

    #[test]
    fn limits_are_named_errors() {
        let p = prices("3.00", "15.00", "3.75", "0.30");
        assert_eq!(
            cost(&p, &usage(TOKENS_MAX + 1, 0, 0, 0)),
            Err(PricingError::TooManyTokens)
        );
        let dear = prices("9000000000000", "0", "0", "0");
        assert_eq!(
            cost(&dear, &usage(TOKENS_MAX, 0, 0, 0)),
            Err(PricingError::Overflow)
        );
    }

    #[test]
    fn version_in_force() {
        let version = |id: &str, effective: i64| PriceVersion {
            id: id.into(),
            model: "m".into(),
            effective_at: Timestamp::from_unix_ms(effective),
            prices: prices("1", "1", "1", "1"),
            max_output_tokens: 4096,
            created_at: Timestamp::from_unix_ms(0),
        };
        let versions = [version("b", 200), version("a", 100), version("c", 300)];
        let at = |ms| version_at(&versions, Timestamp::from_unix_ms(ms)).map(|v| v.id.as_str());
        assert_eq!(at(99), None);
        assert_eq!(at(100), Some("a"));
        assert_eq!(at(250), Some("b"));
        assert_eq!(at(10_000), Some("c"));
    }

    #[test]
    fn model_names() {
        assert!(is_valid_model("claude-sonnet-4.5"));
        assert!(is_valid_model("openai/gpt-4o@2024-08-06"));
        assert!(!is_valid_model(""));
        assert!(!is_valid_model("has space"));
        assert!(!is_valid_model(&"m".repeat(MODEL_LEN_MAX + 1)));
    }

    proptest! {
        /// The cost is never below the exact price and less than one micro-unit above it,
        /// and never decreases when usage grows.
        #[test]
        fn cost_rounds_up_once(
            price in 0i64..100_000_000, tokens in 0u64..10_000_000, extra in 0u64..1000,
        ) {
            let p = TokenPrices {
                input: Amount::from_micros(price),
                output: Amount::from_micros(price),
                cache_write: Amount::ZERO,
                cache_read: Amount::ZERO,
                request_fee: Amount::ZERO,
            };
            let got = i128::from(cost(&p, &usage(tokens, 0, 0, 0)).unwrap().micros());
            let exact_scaled = i128::from(tokens) * i128::from(price);
            prop_assert!(got * 1_000_000 >= exact_scaled);
            prop_assert!((got - 1) * 1_000_000 < exact_scaled);
            let more = i128::from(cost(&p, &usage(tokens, extra, 0, 0)).unwrap().micros());
            prop_assert!(more >= got);
            let worst = i128::from(worst_case(&p, tokens, extra).unwrap().micros());
            prop_assert!(worst >= more);
        }
    }
}
