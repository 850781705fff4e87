//! PostgreSQL with several hosts in its URL (`host1:port1,host2:port2`, with
//! `target_session_attrs=read-write`), as a primary with standbys is addressed: the store and
//! the ledger writer connect to the first host that answers and accepts writes. Here the
//! first host refuses connections (nothing listens on port 1) and the second is the test
//! cluster: the store opens, the writer commits, the balance reads back.

mod support;

use creditgate_domain::Amount;
use creditgate_store::{testing, Store, StoreConfig};
use support::*;

#[tokio::test]
async fn a_multi_host_url_reaches_the_host_that_answers() {
    let Some(db) = testing::postgres().await else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is required when CI is set"
        );
        eprintln!("skipping: no PostgreSQL (set CREDITGATE_TEST_DATABASE_URL)");
        return;
    };
    // postgres://user@host:port/db → postgres://user@127.0.0.1:1,host:port/db?…
    let (scheme_user, rest) = db.url.split_once('@').expect("a user in the URL");
    let separator = if rest.contains('?') { '&' } else { '?' };
    let url = format!("{scheme_user}@127.0.0.1:1,{rest}{separator}target_session_attrs=read-write");
    let store = Store::open(&StoreConfig::new(url.clone()))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let clock = TestClock::new();
    let org = create_org(&store, "acct_multi_host").await;
    let writer = start_writer(&store, clock).await;
    let receipt = writer
        .submit(purchase("txn_multi_host", &org, money("12.34")))
        .await
        .expect("the batch commits")
        .expect("the purchase is made");
    assert!(receipt.transfer.is_some());
    let account = store.account(&org).await.unwrap().expect("the account");
    assert_eq!(account.posted, money("12.34"));
    assert_eq!(account.available(), money("12.34"));
    assert!(account.posted > Amount::ZERO);
    let report = store.check_invariants().await.expect("the snapshot loads");
    assert!(report.is_ok(), "{:#?}", report.violations);
}
