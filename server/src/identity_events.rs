//! The firehose events that announce the account itself rather than a commit: `#account` and
//! `#identity` (plus `#sync`) when its status changes, and `#identity` when its configured
//! handle changes.
//!
//! Status-change events are built here and stored by the auth store in the status change's
//! transaction ([`crate::auth::AuthStore::set_account_status`]); the handle announcement is
//! stored with the record of the announced handle.

use pds_api::runtime::syntax::Handle;
use pds_api::runtime::xrpc::XrpcError;

use crate::account::Account;
use crate::api::internal;
use crate::config::Config;
use crate::firehose::{account_event, identity_event, sync_event, AccountStatus, EventBody};
use crate::repo::BlockStore;
use crate::storage::maintenance::{set_announced_handle, state};
use crate::storage::{append_event, Sql, SqlBlockStore, SqlExt, StorageError};

/// What activation announces, as the reference PDS does: `#account` (active), `#identity`
/// (DID and handle) and `#sync` (the current head commit, so relays can resync). Creates the
/// empty repository on first use (see [`Account::head`]).
pub fn activation_events(config: &Config, account: &Account) -> Result<Vec<EventBody>, XrpcError> {
    let root = account.head(config)?;
    let commit_block = SqlBlockStore::new(account.sql.as_ref())
        .get(&root.commit_cid)
        .map_err(internal)?
        .ok_or_else(|| internal("the head commit's block is missing"))?;
    let now = account.clock.now_micros();
    Ok(vec![
        account_event(&config.did, None, now),
        identity_event(&config.did, Some(&config.handle), now),
        sync_event(&commit_block, now).map_err(internal)?,
    ])
}

/// What deactivation announces: `#account` (inactive, `deactivated`).
pub fn deactivation_events(config: &Config, account: &Account) -> Vec<EventBody> {
    vec![account_event(
        &config.did,
        Some(AccountStatus::Deactivated),
        account.clock.now_micros(),
    )]
}

/// Announces the configured handle with `#identity` if it differs from the last one announced
/// (or none was yet: the first start announces it, as the reference PDS does on account
/// creation), recording it in the same transaction. Returns whether it announced. Cheap when
/// nothing changed (one row read), so the shells call it after every account request.
pub fn announce_identity_changes(config: &Config, account: &Account) -> Result<bool, XrpcError> {
    let db = account.sql.as_ref();
    let handle = config.handle.as_str();
    let announced = |db: &dyn Sql| -> Result<bool, StorageError> {
        Ok(state(db)?.announced_handle.as_deref() == Some(handle))
    };
    if announced(db)? {
        return Ok(false);
    }
    db.transaction(|| -> Result<bool, StorageError> {
        // Re-checked inside: another request may have announced it meanwhile.
        if announced(db)? {
            return Ok(false);
        }
        store_identity_event(config, account, &config.handle)?;
        Ok(true)
    })
    .map_err(XrpcError::from)
}

/// Stores `#identity` with `handle` and records it as the announced handle (inside the
/// caller's transaction).
fn store_identity_event(
    config: &Config,
    account: &Account,
    handle: &Handle,
) -> Result<(), StorageError> {
    let db = account.sql.as_ref();
    let now_micros = account.clock.now_micros();
    let event = identity_event(&config.did, Some(handle), now_micros);
    append_event(db, &event.new_event((now_micros / 1000) as i64))?;
    set_announced_handle(db, handle.as_str())
}

/// Announces the account's identity with `#identity` now, with `handle`, whatever was announced
/// before: after its document or handle changed.
pub fn announce_identity(
    config: &Config,
    account: &Account,
    handle: &Handle,
) -> Result<(), XrpcError> {
    account
        .sql
        .transaction(|| store_identity_event(config, account, handle))
        .map_err(XrpcError::from)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::auth::{AccountStatus as Status, AuthStore, SqlAuthStore};
    use crate::clock::ManualClock;
    use crate::config::MaintenanceConfig;
    use crate::crypto::{KeyAlgorithm, SigningKey};
    use crate::firehose::EventKind;
    use crate::platform::native::{DirBlobStore, NativeSql};
    use crate::storage::sequencer::{events_after, MAX_EVENT_BYTES};
    use pds_api::runtime::syntax::{Did, Handle};

    fn fixture(dir: &std::path::Path) -> (Config, Account) {
        let account = Account::open(
            Box::new(NativeSql::open_in_memory().unwrap()),
            Box::new(DirBlobStore::open(dir).unwrap()),
            Box::new(ManualClock::new(1_700_000_000_000_000)),
        );
        let config = Config {
            hostname: "pds.example.com".into(),
            did: Did::new("did:plc:identityeventstest00000000").unwrap(),
            handle: Handle::new("alice.example.com").unwrap(),
            signing_key: SigningKey::from_bytes(KeyAlgorithm::K256, &[5; 32]).unwrap(),
            plc_rotation_key: None,
            password_hash: String::new(),
            jwt_secret: vec![1; 32],
            blob_upload_limit: 1,
            blob_grace_seconds: 60,
            edge_cache_seconds: 0,
            upload_bytes_per_day: 1,
            session_lifetime_days: 1,
            oauth_trusted_clients: Vec::new(),
            firehose: Default::default(),
            writes: Default::default(),
            maintenance: MaintenanceConfig::default(),
            network: Default::default(),
            proxy: Default::default(),
        };
        (config, account)
    }

    #[test]
    fn status_changes_and_their_events_commit_together_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("pds-identity-events-{}", std::process::id()));
        let (config, account) = fixture(&dir);
        let db = account.sql.as_ref();
        let store = SqlAuthStore::new(db, config.did.as_str());

        // An event the sequencer refuses: the status change is rolled back with it.
        let mut events = deactivation_events(&config, &account);
        events.push(EventBody {
            kind: EventKind::Identity,
            body: vec![0xa0; MAX_EVENT_BYTES + 1],
        });
        assert!(store
            .set_account_status(Status::Deactivated, 1, &events)
            .is_err());
        assert_eq!(store.account_state().unwrap().status, Status::Active);
        assert!(events_after(db, 0, 10).unwrap().is_empty());

        let events = deactivation_events(&config, &account);
        store
            .set_account_status(Status::Deactivated, 2, &events)
            .unwrap();
        assert_eq!(store.account_state().unwrap().status, Status::Deactivated);
        let stored = events_after(db, 0, 10).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].event, events[0].body);

        // Activation: #account, #identity, #sync of the head (created on first use, with its
        // own #sync before).
        let events = activation_events(&config, &account).unwrap();
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Account, EventKind::Identity, EventKind::Sync]
        );
        store
            .set_account_status(Status::Active, 3, &events)
            .unwrap();
        let stored = events_after(db, 0, 10).unwrap();
        let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["account", "sync", "account", "identity", "sync"]);
        let head = account.head(&config).unwrap();
        let sync = crate::data::decode(&stored[4].event).unwrap();
        let sync = sync.as_map().unwrap();
        assert_eq!(sync["rev"].as_str(), Some(head.rev.as_str()));
        let account_body = crate::data::decode(&stored[2].event).unwrap();
        assert_eq!(
            account_body.as_map().unwrap()["active"],
            crate::data::Value::Bool(true)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
