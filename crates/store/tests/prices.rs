//! Price versions on both backends: every rate of a version (both cache-write lifetimes, the
//! server-tool fees, the long-input rates or none) reads back as written, and the version in
//! force is chosen by time.

use creditgate_domain::pricing::{self, LongInput, PriceVersion, TokenPrices, TokenRates};
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::testing;

fn money(text: &str) -> Amount {
    Amount::parse(text).expect("an amount")
}

fn version(id: &str, effective_ms: i64, long: bool) -> PriceVersion {
    PriceVersion {
        id: id.into(),
        model: "claude-sonnet-4-5".into(),
        effective_at: Timestamp::from_unix_ms(effective_ms),
        prices: TokenPrices {
            input: money("3"),
            output: money("15"),
            cache_write: money("3.75"),
            cache_write_1h: money("6"),
            cache_read: money("0.30"),
            request_fee: money("0.000125"),
            web_search_request: money("0.01"),
            web_fetch_request: money("0.002"),
            long_input: long.then_some(LongInput {
                above_input_tokens: 200_000,
                rates: TokenRates {
                    input: money("6"),
                    output: money("22.50"),
                    cache_write: money("7.50"),
                    cache_write_1h: money("12"),
                    cache_read: money("0.60"),
                },
            }),
        },
        max_output_tokens: 64_000,
        created_at: Timestamp::from_unix_ms(1_000),
    }
}

#[tokio::test]
async fn every_rate_reads_back_as_written() {
    for db in testing::all().await {
        let store = db.open().await.expect("the store opens");
        let old = version("price_old", 1_000, false);
        let new = version("price_new", 5_000, true);
        store.insert_price(&new).await.expect("inserted");
        store.insert_price(&old).await.expect("inserted");
        assert_eq!(
            store.price_version("price_new").await.unwrap(),
            Some(new.clone())
        );
        assert_eq!(
            store.price_version("price_old").await.unwrap(),
            Some(old.clone())
        );
        let versions = store.price_versions("claude-sonnet-4-5").await.unwrap();
        assert_eq!(versions, vec![old.clone(), new.clone()]);
        let at = |ms| pricing::version_at(&versions, Timestamp::from_unix_ms(ms)).map(|v| &v.id);
        assert_eq!(at(4_999).map(String::as_str), Some("price_old"));
        assert_eq!(at(5_000).map(String::as_str), Some("price_new"));
        assert_eq!(store.prices().await.unwrap().len(), 2);
    }
}
