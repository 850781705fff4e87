//! Unit tests of the demo: the tour replayed on paper against the demo prices and the proxy's
//! worst case, the top-up within the default limits, the call pattern, the bar, the state file.

use creditgate::config::Config;
use creditgate::demo_upstream::{
    anthropic_input_tokens, openai_input_tokens, output_tokens, REPLY_WORDS,
};
use creditgate::http::proxy::formats;
use creditgate_domain::pricing::{cost, worst_case, TokenPrices, Usage, UsageBound};
use creditgate_domain::Amount;

use super::print::{bar, percent, percent_text};
use super::seed::{load_state, save_state, DemoOrg};
use super::tour::{call_kind, tour_request, Style};
use super::{DemoPrice, PRICES, STATE_FILE, TOUR_CREDIT, TOUR_TOP_UP};

fn prices(price: &DemoPrice) -> TokenPrices {
    let amount = |text: &str| Amount::parse(text).unwrap();
    TokenPrices {
        input: amount(price.input),
        output: amount(price.output),
        cache_write: amount(price.cache_write),
        cache_read: amount(price.cache_read),
        ..TokenPrices::default()
    }
}

/// The tour replayed on paper: each call is refused when the available balance cannot
/// cover the proxy's worst case, else charged the demo upstream's usage.
#[test]
fn tour_credit_is_cut_off_after_20_to_40_calls() {
    let mut available = Amount::parse(TOUR_CREDIT).unwrap();
    let mut refused = None;
    for n in 1..=100 {
        let (style, stream) = call_kind(n);
        let (format, price, input_tokens) = match style {
            Style::Anthropic => (
                formats::Style::Anthropic,
                prices(&PRICES[0]),
                anthropic_input_tokens(&tour_request(style, stream)),
            ),
            Style::OpenAi => (
                formats::Style::OpenAi,
                prices(&PRICES[1]),
                openai_input_tokens(&tour_request(style, stream)),
            ),
        };
        let facts = formats::request_facts(format, &tour_request(style, stream)).unwrap();
        let bound = UsageBound {
            input_tokens: facts.input_tokens_max,
            output_tokens: facts.output_tokens_max(4096),
            ..UsageBound::default()
        };
        let worst = worst_case(&price, &bound).unwrap();
        if available < worst {
            refused = Some((n, style));
            break;
        }
        let usage = Usage {
            input_tokens,
            output_tokens: output_tokens(REPLY_WORDS),
            ..Usage::default()
        };
        let charged = cost(&price, &usage).unwrap();
        assert_eq!(
            charged.micros(),
            match style {
                Style::Anthropic => 498,
                Style::OpenAi => 335,
            }
        );
        available = available.checked_sub(charged).unwrap();
    }
    let (n, style) = refused.expect("cut off");
    assert!((21..=41).contains(&n), "cut off at call {n}");
    assert_eq!((n, style), (29, Style::Anthropic));
}

/// The tour's top-up passes the default top-up limits (whole cents, 5.00 to 5000.00) and
/// restores access for more than the call that was refused.
#[test]
fn tour_top_up_is_within_the_default_limits() {
    let top_up = Amount::parse(TOUR_TOP_UP).unwrap();
    let config = Config::default();
    assert!(creditgate_domain::payment::is_whole_cents(top_up));
    assert!(top_up >= Amount::parse(&config.top_up_min).unwrap());
    assert!(top_up <= Amount::parse(&config.top_up_max).unwrap());
    assert!(top_up > Amount::parse(TOUR_CREDIT).unwrap());
    assert_eq!(
        config.payments,
        creditgate::config::PaymentsProvider::Sandbox
    );
}

#[test]
fn calls_alternate_styles_and_stream_every_other_pair() {
    let kinds: Vec<(Style, bool)> = (1..=5).map(call_kind).collect();
    assert_eq!(
        kinds,
        [
            (Style::Anthropic, false),
            (Style::OpenAi, false),
            (Style::Anthropic, true),
            (Style::OpenAi, true),
            (Style::Anthropic, false),
        ]
    );
}

#[test]
fn bar_and_percent() {
    let full = Amount::from_micros(1_000);
    assert_eq!(bar(full, full), format!("[{}]", "#".repeat(30)));
    assert_eq!(
        bar(Amount::from_micros(500), full),
        format!("[{}{}]", "#".repeat(15), ".".repeat(15))
    );
    assert_eq!(
        bar(Amount::from_micros(-5), full),
        format!("[{}]", ".".repeat(30))
    );
    assert_eq!(
        bar(Amount::from_micros(5_000), full),
        format!("[{}]", "#".repeat(30))
    );
    assert_eq!(percent(Amount::from_micros(499), full), 49);
    assert_eq!(percent_text(Amount::from_micros(499), full), "49%");
    assert_eq!(percent_text(Amount::from_micros(1_001), full), ">100%");
}

#[test]
fn state_file_is_private_and_round_trips() {
    let dir = std::env::temp_dir().join(format!("creditgate_demo_state_{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(STATE_FILE);
    assert!(load_state(&path).unwrap().is_none());
    let demo = DemoOrg {
        org_id: "org_a".into(),
        key_id: "key_b".into(),
        key: "cg_live_c".into(),
    };
    save_state(&path, &demo).unwrap();
    save_state(&path, &demo).unwrap();
    let loaded = load_state(&path).unwrap().unwrap();
    assert_eq!(loaded.key, "cg_live_c");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
