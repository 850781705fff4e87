//! Pricing: what one metered call costs, from its usage and the model's price version.
//!
//! A price version has per-million-token rates for plain input, output, cache writes (the
//! 5-minute cache and the 1-hour cache apart, as Anthropic bills them), and cache reads; a fee
//! per call; a fee per server-tool request (web search, web fetch); and, for models billed
//! that way, a second set of token rates for calls whose input is large (`long_input`: every
//! token of a call whose input, cache reads and writes included, is above N tokens is priced
//! at those rates, as Anthropic's and Google's long-context prices are).
//!
//! Rounding rule. A call is one line item. Its exact cost is
//! `Σ tokens × price_per_million / 1_000_000 + request_fee + Σ requests × request_price`,
//! computed in `i128` micro-units × tokens; the sum is rounded **up** to a whole micro-unit
//! **once**, at the end. So a call never costs less than its exact price, and splitting the
//! sum differently can never make it cheaper or dearer by more than one micro-unit.
//!
//! Worst case (for holds). Before a call, its input may turn out to be cache writes (dearer
//! than plain input on Anthropic-style price books) or cache reads, so the worst case prices
//! every input token at the dearest of the input, cache-write (both) and cache-read rates;
//! when the input bound is above the long-input threshold, the dearer of the two rate sets,
//! rate by rate. Server-tool requests count at most the bound the request allows.

use crate::money::Amount;
use crate::time::Timestamp;

/// Tokens in "per million tokens".
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;
/// Most tokens of one kind in one call the pricing accepts (10^12: far beyond any model's
/// context, and small enough that no product of tokens × price overflows `i128`).
pub const TOKENS_MAX: u64 = 1_000_000_000_000;
/// Most server-tool requests of one kind in one call the pricing accepts.
pub const TOOL_REQUESTS_MAX: u64 = 1_000_000;
/// Longest model name.
pub const MODEL_LEN_MAX: usize = 128;

/// Per-million-token rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenRates {
    /// Per million input tokens.
    pub input: Amount,
    /// Per million output tokens.
    pub output: Amount,
    /// Per million tokens written to the 5-minute prompt cache (and cache writes that do not
    /// say which cache).
    pub cache_write: Amount,
    /// Per million tokens written to the 1-hour prompt cache.
    pub cache_write_1h: Amount,
    /// Per million tokens read from the prompt cache.
    pub cache_read: Amount,
}

impl TokenRates {
    /// The dearer of `self` and `other`, rate by rate.
    fn max(self, other: TokenRates) -> TokenRates {
        TokenRates {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cache_write: self.cache_write.max(other.cache_write),
            cache_write_1h: self.cache_write_1h.max(other.cache_write_1h),
            cache_read: self.cache_read.max(other.cache_read),
        }
    }

    /// The dearest rate an input token can be charged at.
    fn dearest_input(&self) -> Amount {
        self.input
            .max(self.cache_write)
            .max(self.cache_write_1h)
            .max(self.cache_read)
    }
}

/// Token rates for calls with a large input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongInput {
    /// A call whose input tokens (plain, cache writes and cache reads together) are above
    /// this is priced at `rates`, all its tokens.
    pub above_input_tokens: u64,
    /// The rates of such a call.
    pub rates: TokenRates,
}

/// Prices of one model, per million tokens, plus per-call and per-tool-request fees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenPrices {
    /// Per million input tokens.
    pub input: Amount,
    /// Per million output tokens.
    pub output: Amount,
    /// Per million tokens written to the 5-minute prompt cache.
    pub cache_write: Amount,
    /// Per million tokens written to the 1-hour prompt cache.
    pub cache_write_1h: Amount,
    /// Per million tokens read from the prompt cache.
    pub cache_read: Amount,
    /// Charged once per call, whatever its usage.
    pub request_fee: Amount,
    /// Per web search the provider ran for the call (`server_tool_use.web_search_requests`).
    pub web_search_request: Amount,
    /// Per web fetch the provider ran for the call (`server_tool_use.web_fetch_requests`).
    pub web_fetch_request: Amount,
    /// Other token rates for calls with a large input, if the model has them.
    pub long_input: Option<LongInput>,
}

impl TokenPrices {
    /// The rates that are not the long-input ones.
    pub fn base_rates(&self) -> TokenRates {
        TokenRates {
            input: self.input,
            output: self.output,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
            cache_read: self.cache_read,
        }
    }

    /// The rates a call with `input_tokens` of input (cache included) is priced at.
    pub fn rates_for(&self, input_tokens: u64) -> TokenRates {
        match self.long_input {
            Some(long) if input_tokens > long.above_input_tokens => long.rates,
            _ => self.base_rates(),
        }
    }
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
    /// Input tokens written to the 5-minute prompt cache (or to a cache not named).
    pub cache_write_tokens: u64,
    /// Input tokens written to the 1-hour prompt cache.
    pub cache_write_1h_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Web searches the provider ran.
    pub web_search_requests: u64,
    /// Web fetches the provider ran.
    pub web_fetch_requests: u64,
}

impl Usage {
    /// Every input token: plain, written to either cache, and read from it (saturating).
    pub fn input_total(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_write_tokens)
            .saturating_add(self.cache_write_1h_tokens)
            .saturating_add(self.cache_read_tokens)
    }
}

/// The most a call may use: what a hold's worst case prices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageBound {
    /// Input tokens, cache included.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Web searches.
    pub web_search_requests: u64,
    /// Web fetches.
    pub web_fetch_requests: u64,
}

/// Why a cost could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A token count above [`TOKENS_MAX`].
    #[error("a token count is above {TOKENS_MAX}")]
    TooManyTokens,
    /// A server-tool request count above [`TOOL_REQUESTS_MAX`].
    #[error("a server-tool request count is above {TOOL_REQUESTS_MAX}")]
    TooManyRequests,
    /// The cost does not fit an amount.
    #[error("the cost is too large")]
    Overflow,
}

/// The cost of `usage` at `prices`: one line item, rounded up once.
pub fn cost(prices: &TokenPrices, usage: &Usage) -> Result<Amount, PricingError> {
    let rates = prices.rates_for(usage.input_total());
    let lines = [
        (usage.input_tokens, rates.input),
        (usage.output_tokens, rates.output),
        (usage.cache_write_tokens, rates.cache_write),
        (usage.cache_write_1h_tokens, rates.cache_write_1h),
        (usage.cache_read_tokens, rates.cache_read),
    ];
    let mut scaled: i128 = 0;
    for (tokens, price) in lines {
        if tokens > TOKENS_MAX {
            return Err(PricingError::TooManyTokens);
        }
        // ≤ 10^12 × 9.2·10^18 per line: five lines stay far inside i128.
        scaled += i128::from(tokens) * i128::from(price.micros());
    }
    let mut fees = i128::from(prices.request_fee.micros());
    for (requests, price) in [
        (usage.web_search_requests, prices.web_search_request),
        (usage.web_fetch_requests, prices.web_fetch_request),
    ] {
        if requests > TOOL_REQUESTS_MAX {
            return Err(PricingError::TooManyRequests);
        }
        fees += i128::from(requests) * i128::from(price.micros());
    }
    // The fees are whole micro-units: adding them after the rounding is rounding once.
    let total = ceil_div(scaled, TOKENS_PER_PRICE_UNIT) + fees;
    i64::try_from(total)
        .map(Amount::from_micros)
        .map_err(|_| PricingError::Overflow)
}

/// The most a call within `bound` can cost: every input token priced at the dearest input
/// rate, at the dearer of the base and long-input rates when the input may be long (see the
/// module docs).
pub fn worst_case(prices: &TokenPrices, bound: &UsageBound) -> Result<Amount, PricingError> {
    let rates = match prices.long_input {
        Some(long) if bound.input_tokens > long.above_input_tokens => {
            prices.base_rates().max(long.rates)
        }
        _ => prices.base_rates(),
    };
    let worst = TokenPrices {
        input: rates.dearest_input(),
        output: rates.output,
        long_input: None,
        ..prices.clone()
    };
    cost(
        &worst,
        &Usage {
            input_tokens: bound.input_tokens,
            output_tokens: bound.output_tokens,
            web_search_requests: bound.web_search_requests,
            web_fetch_requests: bound.web_fetch_requests,
            ..Usage::default()
        },
    )
}

/// What a metered call is charged, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The cost of the usage it reported.
    Usage(Amount),
    /// Its usage is unknown (missing, malformed, incomplete, or out of range): the hold, its
    /// worst case, since the provider may have served and billed it.
    Unknown(Amount),
}

impl Charge {
    /// The amount charged.
    pub fn amount(self) -> Amount {
        match self {
            Charge::Usage(amount) | Charge::Unknown(amount) => amount,
        }
    }
}

/// The charge of a call held for `hold` that reported `usage` (`None`: unknown) at `prices`.
pub fn charge(prices: &TokenPrices, usage: Option<&Usage>, hold: Amount) -> Charge {
    match usage.map(|usage| cost(prices, usage)) {
        Some(Ok(amount)) => Charge::Usage(amount),
        Some(Err(_)) | None => Charge::Unknown(hold),
    }
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
            ..TokenPrices::default()
        }
    }

    fn usage(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_write_tokens: cache_write,
            cache_read_tokens: cache_read,
            ..Usage::default()
        }
    }

    fn bound(input: u64, output: u64) -> UsageBound {
        UsageBound {
            input_tokens: input,
            output_tokens: output,
            ..UsageBound::default()
        }
    }

    fn money(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    /// Claude Sonnet 4.5's published book: 3 / 15, 5-minute writes 3.75, 1-hour writes 6,
    /// reads 0.30, web search 10 per 1,000; above 200K input tokens 6 / 22.50 / 7.50 / 12 /
    /// 0.60.
    fn sonnet() -> TokenPrices {
        TokenPrices {
            input: money("3"),
            output: money("15"),
            cache_write: money("3.75"),
            cache_write_1h: money("6"),
            cache_read: money("0.30"),
            request_fee: Amount::ZERO,
            web_search_request: money("0.01"),
            web_fetch_request: Amount::ZERO,
            long_input: Some(LongInput {
                above_input_tokens: 200_000,
                rates: TokenRates {
                    input: money("6"),
                    output: money("22.50"),
                    cache_write: money("7.50"),
                    cache_write_1h: money("12"),
                    cache_read: money("0.60"),
                },
            }),
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
    fn unknown_usage_is_charged_the_hold() {
        let p = sonnet();
        let hold = money("1.50");
        let used = usage(1_000, 200, 0, 0);
        assert_eq!(charge(&p, Some(&used), hold), Charge::Usage(money("0.006")));
        assert_eq!(charge(&p, None, hold), Charge::Unknown(hold));
        let absurd = usage(TOKENS_MAX + 1, 0, 0, 0);
        assert_eq!(charge(&p, Some(&absurd), hold).amount(), hold);
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
        let mut p = prices("3.00", "15.00", "3.75", "0.30");
        assert_eq!(
            worst_case(&p, &bound(1_000_000, 0)).unwrap().to_string(),
            "3.75"
        );
        assert_eq!(
            worst_case(&p, &bound(1_000_000, 1_000_000))
                .unwrap()
                .to_string(),
            "18.75"
        );
        p.cache_write_1h = money("6");
        assert_eq!(
            worst_case(&p, &bound(1_000_000, 0)).unwrap().to_string(),
            "6.00"
        );
    }

    #[test]
    fn cache_writes_by_lifetime_and_server_tools() {
        // (usage: input, output, 5m writes, 1h writes, reads, searches, fetches; expected)
        let table = [
            ((1_000, 200, 0, 0, 0, 0, 0), "0.006"),
            // 2,051 tokens to the 5-minute cache: 2051 × 3.75 / 10^6 = 0.00769125 → up.
            ((10, 50, 2_051, 0, 0, 0, 0), "0.008472"),
            // The same tokens to the 1-hour cache: 2051 × 6 = 0.012306.
            ((10, 50, 0, 2_051, 0, 0, 0), "0.013086"),
            ((10, 50, 1_000, 1_051, 4_000, 0, 0), "0.012036"),
            // Three searches at 0.01 each; fetches are free in this book.
            ((10, 50, 0, 0, 0, 3, 2), "0.03078"),
        ];
        for (u, expected) in table {
            let usage = Usage {
                input_tokens: u.0,
                output_tokens: u.1,
                cache_write_tokens: u.2,
                cache_write_1h_tokens: u.3,
                cache_read_tokens: u.4,
                web_search_requests: u.5,
                web_fetch_requests: u.6,
            };
            assert_eq!(
                cost(&sonnet(), &usage).unwrap().to_string(),
                expected,
                "{u:?}"
            );
        }
        let mut p = sonnet();
        p.web_fetch_request = money("0.002");
        let fetched = Usage {
            web_fetch_requests: 4,
            ..Usage::default()
        };
        assert_eq!(cost(&p, &fetched).unwrap().to_string(), "0.008");
        let too_many = Usage {
            web_search_requests: TOOL_REQUESTS_MAX + 1,
            ..Usage::default()
        };
        assert_eq!(cost(&p, &too_many), Err(PricingError::TooManyRequests));
    }

    #[test]
    fn long_input_rates_apply_above_the_threshold_to_every_token() {
        let p = sonnet();
        // 200,000 input tokens exactly: the base rates.
        let at = usage(150_000, 1_000, 30_000, 20_000);
        assert_eq!(at.input_total(), 200_000);
        assert_eq!(cost(&p, &at).unwrap().to_string(), "0.5835");
        // One more token read from the cache: every token at the long-input rates
        // (1.1595006, rounded up once).
        let above = usage(150_000, 1_000, 30_000, 20_001);
        assert_eq!(cost(&p, &above).unwrap().to_string(), "1.159501");
        // The worst case of a bound below the threshold uses the base rates only.
        assert_eq!(
            worst_case(&p, &bound(200_000, 1_000)).unwrap().to_string(),
            "1.215"
        );
        // Above it, the dearer set: 200,001 × 12 (1-hour writes) + 1,000 × 22.50.
        assert_eq!(
            worst_case(&p, &bound(200_001, 1_000)).unwrap().to_string(),
            "2.422512"
        );
        let searches = UsageBound {
            web_search_requests: 5,
            ..bound(10, 10)
        };
        assert_eq!(worst_case(&p, &searches).unwrap().to_string(), "0.05021");
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
                ..TokenPrices::default()
            };
            let got = i128::from(cost(&p, &usage(tokens, 0, 0, 0)).unwrap().micros());
            let exact_scaled = i128::from(tokens) * i128::from(price);
            prop_assert!(got * 1_000_000 >= exact_scaled);
            prop_assert!((got - 1) * 1_000_000 < exact_scaled);
            let more = i128::from(cost(&p, &usage(tokens, extra, 0, 0)).unwrap().micros());
            prop_assert!(more >= got);
            let worst = i128::from(worst_case(&p, &bound(tokens, extra)).unwrap().micros());
            prop_assert!(worst >= more);
        }

        /// No usage within a bound costs more than the bound's worst case, whatever the
        /// rates, the long-input threshold, and how the input splits between plain, cache
        /// writes and reads.
        #[test]
        fn worst_case_covers_every_usage_within_its_bound(
            rates in proptest::collection::vec(0i64..50_000_000, 10),
            above in 0u64..400_000,
            long in any::<bool>(),
            input in 0u64..500_000,
            split in proptest::collection::vec(0u64..=100, 4),
            output in 0u64..100_000,
            searches in 0u64..20,
            fetches in 0u64..20,
        ) {
            let r = |i: usize| Amount::from_micros(rates[i]);
            let p = TokenPrices {
                input: r(0),
                output: r(1),
                cache_write: r(2),
                cache_write_1h: r(3),
                cache_read: r(4),
                request_fee: money("0.001"),
                web_search_request: money("0.01"),
                web_fetch_request: money("0.002"),
                long_input: long.then_some(LongInput {
                    above_input_tokens: above,
                    rates: TokenRates {
                        input: r(5),
                        output: r(6),
                        cache_write: r(7),
                        cache_write_1h: r(8),
                        cache_read: r(9),
                    },
                }),
            };
            let b = UsageBound {
                input_tokens: input,
                output_tokens: output,
                web_search_requests: searches,
                web_fetch_requests: fetches,
            };
            // Some of the bound, split four ways.
            let part = |i: usize| input * split[i] / 400;
            let used = Usage {
                input_tokens: part(0),
                output_tokens: output * split[1] / 100,
                cache_write_tokens: part(1),
                cache_write_1h_tokens: part(2),
                cache_read_tokens: part(3),
                web_search_requests: searches * split[2] / 100,
                web_fetch_requests: fetches * split[3] / 100,
            };
            prop_assert!(used.input_total() <= input);
            prop_assert!(cost(&p, &used).unwrap() <= worst_case(&p, &b).unwrap());
        }
    }
}
