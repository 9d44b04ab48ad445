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
        status: "active".into(),
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
    }
}

#[test]
fn account_identity_and_status() {
    let db = db();
    assert_eq!(get_account(&db).unwrap(), None);
    assert!(matches!(
        set_account_status(&db, "deactivated", 5),
        Err(StorageError::Conflict(_))
    ));
    create_account(&db, &account()).unwrap();
    assert!(matches!(
        create_account(&db, &account()),
        Err(StorageError::Conflict(_))
    ));
    set_account_status(&db, "deactivated", 2000).unwrap();
    set_handle(&db, Some("alice2.test")).unwrap();
    confirm_email(&db, 1500).unwrap();
    let got = get_account(&db).unwrap().unwrap();
    assert_eq!(got.status, "deactivated");
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
    assert_eq!(names, [("phone".into(), true), ("laptop".into(), false)]);

    insert_refresh_token(&db, &token("t-phone", Some("phone"))).unwrap();
    insert_refresh_token(&db, &token("t-laptop", Some("laptop"))).unwrap();
    insert_refresh_token(&db, &token("t-main", None)).unwrap();
    assert!(delete_app_password(&db, "phone").unwrap());
    assert!(!delete_app_password(&db, "phone").unwrap());
    assert_eq!(get_refresh_token(&db, "t-phone").unwrap(), None);
    assert!(get_refresh_token(&db, "t-laptop").unwrap().is_some());

    // A new main password ends main-password sessions only.
    set_password_hash(&db, "hash-2").unwrap();
    assert_eq!(get_refresh_token(&db, "t-main").unwrap(), None);
    assert!(get_refresh_token(&db, "t-laptop").unwrap().is_some());
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
    assert_eq!(delete_expired_refresh_tokens(&db, 2_000).unwrap(), 1);
    assert!(get_refresh_token(&db, "late").unwrap().is_some());
}
