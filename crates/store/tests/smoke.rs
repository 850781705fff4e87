use std::sync::Arc;

use creditgate_domain::ledger::*;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::{testing, SystemClock, WriterConfig};

#[tokio::test]
async fn smoke_on_both_backends() {
    for db in testing::all().await {
        let store = db.open().await.unwrap();
        let org = AccountId::new("acct_org_a");
        store
            .create_account(
                &Account::new(org.clone(), AccountKind::OrgCredit, Some(Amount::ZERO)),
                Timestamp::default(),
            )
            .await
            .unwrap();
        let writer = store
            .start_writer(WriterConfig::default(), Arc::new(SystemClock))
            .await
            .unwrap();
        let payments = AccountKind::PaymentsReceived.operator_account_id().unwrap();
        let revenue = AccountKind::UsageRevenue.operator_account_id().unwrap();
        let outcome = writer
            .submit(Operation::Transfer(TransferRequest {
                id: TransferId::new("txn_1"),
                debit_account_id: payments.clone(),
                credit_account_id: org.clone(),
                amount: Amount::from_units(10).unwrap(),
                kind: TransferKind::Purchase,
                reference: String::new(),
                grant: None,
            }))
            .await
            .unwrap();
        assert_eq!(outcome.unwrap().status, Status::Created);
        let hold = writer
            .submit(Operation::PlaceHold(PlaceHoldRequest {
                id: HoldId::new("hold_1"),
                debit_account_id: org.clone(),
                credit_account_id: revenue.clone(),
                amount: Amount::from_units(4).unwrap(),
                reference: "r".into(),
                ttl_ms: 60_000,
            }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hold.status, Status::Created);
        let settled = writer
            .submit(Operation::SettleHold(SettleHoldRequest {
                id: TransferId::new("txn_2"),
                hold_id: HoldId::new("hold_1"),
                amount: Amount::from_units(3).unwrap(),
            }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            settled.transfer.unwrap().debit_balance_after,
            Amount::from_units(7).unwrap()
        );
        let account = store.account(&org).await.unwrap().unwrap();
        assert_eq!(account.available(), Amount::from_units(7).unwrap());
        let report = store.check_invariants().await.unwrap();
        assert!(report.is_ok(), "{:?} on {:?}", report, db.kind);
    }
}
