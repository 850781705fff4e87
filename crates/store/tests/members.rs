//! Members on both backends: an org keeps an owner even when two removals race; an email is
//! a member of an org once; a sign-in link opens one session however many requests race to
//! use it, and never after it expires; a session ends at sign-out and with its member; the
//! invitation's email is written with the member, and its secret is cleared once sent.

use creditgate_domain::member::{ChangeError, Role};
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{Added, LinkUse, Member, NewLink, NewOrg};
use creditgate_store::testing;
use creditgate_store::Store;

const NOW: Timestamp = Timestamp::from_unix_ms(1_790_000_000_000);

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(NOW.unix_ms() + ms)
}

async fn org(store: &Store, id: &str) {
    let created = store
        .create_org(
            &NewOrg {
                id: id.into(),
                name: "Members Co".into(),
                billing_emails: vec![],
                low_thresholds: vec![],
                floor: Amount::ZERO,
                spend_limit_monthly: None,
                rate_limits: Default::default(),
            },
            NOW,
        )
        .await
        .expect("the org is created");
    assert!(created);
}

fn member(id: &str, org_id: &str, email: &str, role: Role) -> Member {
    Member {
        id: id.into(),
        org_id: org_id.into(),
        email: email.into(),
        name: String::new(),
        role,
        invited_by: "operator".into(),
        created_at: NOW,
        updated_at: NOW,
        last_sign_in_at: None,
    }
}

fn link(token: &str, notice: &str, expires_at: Timestamp) -> NewLink {
    NewLink {
        token_hash: format!("hash_{token}"),
        secret: format!("secret_{token}"),
        expires_at,
        notice_id: notice.into(),
        notice_kind: "member.sign_in",
    }
}

async fn invariants(store: &Store) {
    let report = store.check_invariants().await.expect("a snapshot");
    assert!(report.is_ok(), "{:?}", report.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_keeps_an_owner_and_an_email_joins_once() {
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        org(&store, "org_m1").await;
        let owner = member("mem_o1", "org_m1", "o1@example.com", Role::Owner);
        let second = member("mem_o2", "org_m1", "o2@example.com", Role::Owner);
        for m in [&owner, &second] {
            let added = store.add_member(m, None, None, NOW).await.unwrap();
            assert!(matches!(added, Added::Added(_)), "{added:?}");
        }
        let again = member("mem_o3", "org_m1", "o1@example.com", Role::Developer);
        assert_eq!(
            store.add_member(&again, None, None, NOW).await.unwrap(),
            Added::EmailTaken
        );
        // Two owners removing each other at once: one wins, the org keeps an owner.
        let (a, b) = tokio::join!(
            store.remove_member("org_m1", "mem_o1", Some(Role::Owner), NOW),
            store.remove_member("org_m1", "mem_o2", Some(Role::Owner), NOW),
        );
        let outcomes = [a.unwrap().unwrap(), b.unwrap().unwrap()];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes.contains(&Err(ChangeError::LastOwner)),
            "{outcomes:?}"
        );
        let left = store.members("org_m1").await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].role, Role::Owner);
        // An admin may not add an owner; the operator may.
        let dev = member("mem_d1", "org_m1", "d1@example.com", Role::Owner);
        assert_eq!(
            store
                .add_member(&dev, Some(Role::Admin), None, NOW)
                .await
                .unwrap(),
            Added::Refused(ChangeError::OwnersOnly)
        );
        assert_eq!(store.member("org_m1", "mem_d1").await.unwrap(), None);
        assert_eq!(store.admin_emails("org_m1").await.unwrap().len(), 1);
        invariants(&store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_opens_one_session_and_sessions_end() {
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        org(&store, "org_m2").await;
        let ada = member("mem_a", "org_m2", "ada@example.com", Role::Admin);
        let invite = NewLink {
            notice_kind: "member.invited",
            ..link("invite", "ntc_invite", at(60_000))
        };
        store
            .add_member(&ada, None, Some(&invite), NOW)
            .await
            .unwrap();
        let pending = store.due_notices(at(1), 10).await.unwrap();
        let notice = pending
            .iter()
            .find(|n| n.id == "ntc_invite")
            .expect("the invitation");
        assert_eq!(notice.kind, "member.invited");
        assert_eq!(notice.member_id.as_deref(), Some("mem_a"));
        assert_eq!(notice.secret.as_deref(), Some("secret_invite"));
        store.notice_sent("ntc_invite", "", at(2)).await.unwrap();
        let sent = store.due_notices(at(3), 10).await.unwrap();
        assert!(sent.iter().all(|n| n.id != "ntc_invite"));

        // Eight requests race to use one link: one session.
        store
            .create_sign_in_link(&ada, &link("race", "ntc_race", at(60_000)), NOW)
            .await
            .unwrap();
        assert_eq!(store.open_sign_in_links("mem_a", at(1)).await.unwrap(), 2);
        let uses = futures_util::future::join_all((0..8).map(|i| {
            let store = store.clone();
            async move {
                store
                    .use_sign_in_link(
                        "hash_race",
                        &format!("session_{i}"),
                        "csrf",
                        at(600_000),
                        at(10),
                    )
                    .await
                    .unwrap()
            }
        }))
        .await;
        let signed: Vec<usize> = uses
            .iter()
            .enumerate()
            .filter(|(_, u)| matches!(u, LinkUse::SignedIn(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(signed.len(), 1, "{uses:?}");
        assert!(uses
            .iter()
            .all(|u| matches!(u, LinkUse::SignedIn(_) | LinkUse::Used)));
        let session_hash = format!("session_{}", signed[0]);
        let session = store
            .session(&session_hash, at(20))
            .await
            .unwrap()
            .expect("open");
        assert_eq!(session.member.id, "mem_a");
        assert_eq!(session.member.last_sign_in_at, Some(at(10)));
        assert_eq!(
            store.session(&session_hash, at(600_000)).await.unwrap(),
            None,
            "expired"
        );
        store.end_session(&session_hash, at(30)).await.unwrap();
        assert_eq!(
            store.session(&session_hash, at(31)).await.unwrap(),
            None,
            "ended"
        );

        // An expired link opens nothing; an unknown one is not found.
        store
            .create_sign_in_link(&ada, &link("old", "ntc_old", at(100)), NOW)
            .await
            .unwrap();
        assert_eq!(
            store
                .use_sign_in_link("hash_old", "s_old", "c", at(600_000), at(100))
                .await
                .unwrap(),
            LinkUse::Expired
        );
        assert_eq!(
            store
                .use_sign_in_link("hash_nope", "s_nope", "c", at(600_000), at(1))
                .await
                .unwrap(),
            LinkUse::NotFound
        );

        // Removing the member ends its sessions and links.
        store
            .create_sign_in_link(&ada, &link("last", "ntc_last", at(60_000)), NOW)
            .await
            .unwrap();
        assert_eq!(
            store
                .use_sign_in_link("hash_last", "s_last", "c", at(600_000), at(40))
                .await
                .unwrap(),
            LinkUse::SignedIn(Member {
                last_sign_in_at: Some(at(40)),
                ..ada.clone()
            })
        );
        let removed = store
            .remove_member("org_m2", "mem_a", None, at(50))
            .await
            .unwrap();
        assert!(matches!(removed, Some(Ok(_))), "{removed:?}");
        assert_eq!(store.session("s_last", at(51)).await.unwrap(), None);
        assert_eq!(store.open_sign_in_links("mem_a", at(51)).await.unwrap(), 0);
        invariants(&store).await;
    }
}
