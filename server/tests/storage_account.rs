//! The account's rows: identity and status, preferences, app passwords,
//! refresh tokens (revocation ends sessions).

use pds::platform::native::NativeSql;
use pds::storage::account::*;
use pds::storage::{migrate, StorageError};

fn db() -> NativeSql {
    let db = NativeSql::open_in_memory().unwrap();
    migrate(&db).unwrap();
    db
}

fn account() -> Account {
    Account {
        did: "did:plc:abc".into(),
        handle: Some("alice.test".into()),
        email: Some("alice@example.com".into()),
        email_confirmed_ms: None,
        password_hash: Some("hash-1".into()),
        status: AccountStatus::Active,
        status_changed_ms: None,
        created_ms: 1000,
    }
}

fn token(id: &str, app_password: Option<&str>) -> RefreshToken {
    RefreshToken {
        id: id.into(),
        app_password_name: app_password.map(str::to_owned),
        scope: "com.atproto.refresh".into(),
        created_ms: 10,
        expires_ms: 1_000,
        next_id: None,
        session_started_ms: 5,
    }
}

#[test]
fn account_identity_and_status() {
    let db = db();
    assert_eq!(get_account(&db).unwrap(), None);
    assert!(matches!(
        set_account_status(&db, AccountStatus::Deactivated, 5),
        Err(StorageError::Conflict(_))
    ));
    create_account(&db, &account()).unwrap();
    assert!(matches!(
        create_account(&db, &account()),
        Err(StorageError::Conflict(_))
    ));
    set_account_status(&db, AccountStatus::Deactivated, 2000).unwrap();
    set_handle(&db, Some("alice2.test")).unwrap();
    confirm_email(&db, 1500).unwrap();
    let got = get_account(&db).unwrap().unwrap();
    assert_eq!(got.status, AccountStatus::Deactivated);
    assert_eq!(got.status_changed_ms, Some(2000));
    assert_eq!(got.handle.as_deref(), Some("alice2.test"));
    assert_eq!(got.email_confirmed_ms, Some(1500));
    set_email(&db, Some("new@example.com")).unwrap();
    let got = get_account(&db).unwrap().unwrap();
    assert_eq!(got.email.as_deref(), Some("new@example.com"));
    assert_eq!(got.email_confirmed_ms, None, "a new email is unconfirmed");
}

#[test]
fn preferences_round_trip() {
    let db = db();
    assert_eq!(get_preferences(&db).unwrap(), None);
    put_preferences(&db, r#"[{"$type":"app.bsky.actor.defs#adultContentPref"}]"#).unwrap();
    put_preferences(&db, "[]").unwrap();
    assert_eq!(get_preferences(&db).unwrap().as_deref(), Some("[]"));
}

#[test]
fn revoking_an_app_password_ends_its_sessions() {
    let db = db();
    create_account(&db, &account()).unwrap();
    let app = AppPassword {
        name: "phone".into(),
        password_hash: "h".into(),
        privileged: true,
        created_ms: 5,
        lookup: Some("0123456789abcdef".into()),
    };
    create_app_password(&db, &app).unwrap();
    assert!(matches!(
        create_app_password(&db, &app),
        Err(StorageError::Conflict(_))
    ));
    create_app_password(
        &db,
        &AppPassword {
            name: "laptop".into(),
            privileged: false,
            created_ms: 6,
            ..app.clone()
        },
    )
    .unwrap();
    let names: Vec<(String, bool)> = list_app_passwords(&db)
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.privileged))
        .collect();
    // Newest first.
    assert_eq!(names, [("laptop".into(), false), ("phone".into(), true)]);
    assert_eq!(
        list_app_passwords(&db).unwrap()[1].lookup.as_deref(),
        Some("0123456789abcdef")
    );

    insert_refresh_token(&db, &token("t-phone", Some("phone"))).unwrap();
    insert_refresh_token(&db, &token("t-laptop", Some("laptop"))).unwrap();
    insert_refresh_token(&db, &token("t-main", None)).unwrap();
    assert!(delete_app_password(&db, "phone").unwrap());
    assert!(!delete_app_password(&db, "phone").unwrap());
    assert_eq!(get_refresh_token(&db, "t-phone").unwrap(), None);
    assert!(get_refresh_token(&db, "t-laptop").unwrap().is_some());

    assert_eq!(
        get_refresh_token(&db, "t-laptop")
            .unwrap()
            .unwrap()
            .session_started_ms,
        5
    );
    // A new main password ends every session, app-password sessions included; the app
    // passwords stay.
    set_password_hash(&db, "hash-2").unwrap();
    assert_eq!(get_refresh_token(&db, "t-main").unwrap(), None);
    assert_eq!(get_refresh_token(&db, "t-laptop").unwrap(), None);
    assert_eq!(list_app_passwords(&db).unwrap().len(), 1);
    assert_eq!(
        get_account(&db).unwrap().unwrap().password_hash.as_deref(),
        Some("hash-2")
    );
}

#[test]
fn refresh_tokens_rotate_once_and_revoke_whole_chains() {
    let db = db();
    insert_refresh_token(&db, &token("a", None)).unwrap();
    rotate_refresh_token(&db, "a", &token("b", None)).unwrap();
    assert_eq!(
        get_refresh_token(&db, "a")
            .unwrap()
            .unwrap()
            .next_id
            .as_deref(),
        Some("b")
    );
    // Rotating a used token again is a replay: refused, nothing stored.
    assert!(matches!(
        rotate_refresh_token(&db, "a", &token("c", None)),
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(get_refresh_token(&db, "c").unwrap(), None);
    assert!(matches!(
        rotate_refresh_token(&db, "missing", &token("d", None)),
        Err(StorageError::Conflict(_))
    ));
    rotate_refresh_token(&db, "b", &token("c", None)).unwrap();
    insert_refresh_token(&db, &token("other", None)).unwrap();
    assert_eq!(revoke_refresh_token(&db, "a").unwrap(), 3);
    assert_eq!(get_refresh_token(&db, "c").unwrap(), None);
    assert!(get_refresh_token(&db, "other").unwrap().is_some());

    let mut late = token("late", None);
    late.expires_ms = 5_000;
    insert_refresh_token(&db, &late).unwrap();
    // Pruning drops the expired and the long-spent, and keeps the rest.
    assert_eq!(prune_refresh_tokens(&db, 2_000, 0).unwrap(), 1);
    assert!(get_refresh_token(&db, "late").unwrap().is_some());
    assert_eq!(
        prune_refresh_tokens(&db, 5_000, 0).unwrap(),
        1,
        "expired at exp exactly"
    );
    assert!(get_refresh_token(&db, "late").unwrap().is_none());
}

#[test]
fn identity_is_seeded_once_and_config_wins_only_when_it_changes() {
    let db = db();
    let seeds = |handle, password_hash| Seeds {
        did: "did:plc:abc",
        handle,
        password_hash,
    };
    let identity = |r: Reconciled| match r {
        Reconciled::Identity(i) => i,
        Reconciled::OtherDid(d) => panic!("other DID {d}"),
    };

    // First start: the configuration seeds the account.
    let first = identity(reconcile_with_seeds(&db, seeds("alice.test", "hash-1"), 10).unwrap());
    assert_eq!(first.handle, "alice.test");
    assert_eq!(first.password_hash, "hash-1");
    // A did:plc account arrives by migration: deactivated until it is activated.
    assert_eq!(first.status, AccountStatus::Deactivated);
    assert_eq!(get_account(&db).unwrap().unwrap().created_ms, 10);
    let web = crate::db();
    let born_here = identity(
        reconcile_with_seeds(
            &web,
            Seeds {
                did: "did:web:pds.example.com",
                handle: "alice.test",
                password_hash: "hash-1",
            },
            10,
        )
        .unwrap(),
    );
    assert_eq!(
        born_here.status,
        AccountStatus::Active,
        "a did:web of this host is born here"
    );

    // The handle changes through the API; a restart with the same configuration keeps it.
    set_handle(&db, Some("alice-new.test")).unwrap();
    let restarted = identity(reconcile_with_seeds(&db, seeds("alice.test", "hash-1"), 20).unwrap());
    assert_eq!(restarted.handle, "alice-new.test");

    // A session opened with the password, and one with an app password.
    insert_refresh_token(&db, &token("main", None)).unwrap();
    insert_refresh_token(&db, &token("app", Some("phone"))).unwrap();
    set_account_status(&db, AccountStatus::Deactivated, 25).unwrap();

    // A redeploy with a new handle and a new password hash: both win, every session ends.
    let redeployed = identity(reconcile_with_seeds(&db, seeds("bob.test", "hash-2"), 30).unwrap());
    assert_eq!(redeployed.handle, "bob.test");
    assert_eq!(redeployed.password_hash, "hash-2");
    assert_eq!(
        redeployed.status,
        AccountStatus::Deactivated,
        "status is state, not configuration"
    );
    assert_eq!(get_refresh_token(&db, "main").unwrap(), None);
    assert_eq!(get_refresh_token(&db, "app").unwrap(), None);

    // A login rehashes the password (new parameters): its sessions stay, and a restart with
    // the same configuration keeps the new hash.
    insert_refresh_token(&db, &token("main-2", None)).unwrap();
    rehash_password(&db, "hash-2-rehashed").unwrap();
    assert!(get_refresh_token(&db, "main-2").unwrap().is_some());
    let rehashed = identity(reconcile_with_seeds(&db, seeds("bob.test", "hash-2"), 35).unwrap());
    assert_eq!(rehashed.password_hash, "hash-2-rehashed");
    assert!(get_refresh_token(&db, "main-2").unwrap().is_some());

    // Another DID's data is refused, and nothing is changed.
    let other = reconcile_with_seeds(
        &db,
        Seeds {
            did: "did:plc:other",
            handle: "x.test",
            password_hash: "hash-3",
        },
        40,
    )
    .unwrap();
    assert_eq!(other, Reconciled::OtherDid("did:plc:abc".into()));
    assert_eq!(
        get_account(&db).unwrap().unwrap().handle.as_deref(),
        Some("bob.test")
    );
}

#[test]
fn an_account_row_without_seeds_keeps_its_sessions() {
    // A database from before identities were seeded: the row exists (created by a status
    // change) with no handle and no password hash.
    let db = db();
    let mut old = account();
    old.handle = None;
    old.password_hash = None;
    create_account(&db, &old).unwrap();
    insert_refresh_token(&db, &token("main", None)).unwrap();
    let r = reconcile_with_seeds(
        &db,
        Seeds {
            did: "did:plc:abc",
            handle: "alice.test",
            password_hash: "hash-1",
        },
        10,
    )
    .unwrap();
    assert!(
        matches!(r, Reconciled::Identity(ref i) if i.handle == "alice.test" && i.password_hash == "hash-1")
    );
    assert!(get_refresh_token(&db, "main").unwrap().is_some());
}
