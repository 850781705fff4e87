//! The writer survives what it should: a malformed id in one operation, and (PostgreSQL) the
//! server ending its connection.

mod support;

use creditgate_domain::ledger::*;
use creditgate_store::testing::{self, Kind};
use support::*;

#[tokio::test]
async fn a_nul_byte_in_one_operation_fails_only_that_operation() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_funds", &org, money("10.00")))
            .await;
        let outcomes = ledger
            .writer
            .submit_many(vec![
                usage("txn_ok_1", &org, money("1.00")),
                settle("txn_settle", "hold\0x", money("1.00")),
                usage("txn_nul\0", &org, money("1.00")),
                void("txn_void", "hold\0y"),
                usage("txn_ok_2", &org, money("1.00")),
            ])
            .await
            .expect("the batch commits");
        assert_eq!(
            statuses(&outcomes),
            vec![
                Ok(Status::Created),
                Err(Rejection::HoldNotFound),
                Err(Rejection::IdInvalidCharacter),
                Err(Rejection::HoldNotFound),
                Ok(Status::Created),
            ],
            "{:?}",
            db.kind
        );
        assert_eq!(ledger.account(&org).await.posted, money("8.00"));
        assert_invariants(&ledger.store).await;
    }
}

#[tokio::test]
async fn the_postgres_writer_reconnects_after_the_server_ends_its_session() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    assert_eq!(db.kind, Kind::Postgres);
    let ledger = Ledger::open(&db).await;
    let org = ledger.org.clone();
    ledger
        .created(purchase("txn_before", &org, money("10.00")))
        .await;

    let (admin, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("the test database accepts connections");
    tokio::spawn(connection);
    let ended = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("sessions can be ended");
    assert!(ended >= 1, "the store's sessions were ended");

    // The first attempt may still meet the dead connection; the same id again is safe, and
    // within a few attempts the writer has reconnected.
    let mut last = None;
    for _ in 0..3 {
        match ledger
            .writer
            .submit(usage("txn_after", &org, money("1.00")))
            .await
        {
            Ok(outcome) => {
                last = Some(outcome);
                break;
            }
            Err(error) => eprintln!("attempt failed as expected while reconnecting: {error}"),
        }
    }
    let receipt = last
        .expect("the writer reconnected")
        .expect("the usage is accepted");
    assert_eq!(receipt.status, Status::Created);
    assert_eq!(ledger.account(&org).await.posted, money("9.00"));
    assert_invariants(&ledger.store).await;
}
