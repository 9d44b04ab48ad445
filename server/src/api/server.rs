//! `com.atproto.server`: describing the server, sessions, app passwords, service tokens and the
//! account's status. The rules live in `crate::auth`; these methods adapt them to the lexicon.

use pds_api::com::atproto::server::{
    activate_account, check_account_status, create_account, create_app_password, create_session,
    deactivate_account, delete_session, describe_server, get_service_auth, get_session,
    list_app_passwords, refresh_session, revoke_app_password, ComAtprotoServer,
};
use pds_api::dev::rustpds::server::{
    change_password, get_account_status, get_status, DevRustpdsServer,
};
use pds_api::runtime::syntax::{CidString, Datetime, Did};
use pds_api::runtime::xrpc::XrpcError;

use super::{Api, RequestContext};
use crate::auth::{AccountStatus, AuthStore, SqlAuthStore};
use crate::storage::SqlExt;

impl Api<'_> {
    /// The `didDoc` of a session answer: a did:plc account's document from the directory
    /// (cached), where clients find the account's PDS. None when it can't be resolved (the
    /// session stands without it, as with the reference), and none for a did:web account,
    /// whose document is this host's own and says nothing the client does not know.
    async fn session_did_document(&self) -> Option<pds_api::runtime::value::Value> {
        if self.config.did.method() != "plc" {
            return None;
        }
        let doc = self.own_did_document().await.ok()?;
        pds_api::runtime::value::Value::from_json(&doc).ok()
    }
}

/// This project's own account methods (`dev.rustpds.server`, lexicons in `lexicons/dev/`).
impl DevRustpdsServer for Api<'_> {
    const SERVES_CHANGE_PASSWORD: bool = true;
    const SERVES_GET_ACCOUNT_STATUS: bool = true;
    const SERVES_GET_STATUS: bool = true;

    async fn change_password(
        &self,
        cx: &RequestContext,
        _params: change_password::Params,
        input: change_password::Input,
    ) -> Result<(), XrpcError> {
        self.with_auth(|auth| {
            auth.change_password(&cx.caller, &input.current_password, &input.new_password)
        })?;
        // The stored identity changed: the next request reads it again.
        self.account.forget_effective_config();
        Ok(())
    }

    async fn get_status(
        &self,
        cx: &RequestContext,
        _params: get_status::Params,
    ) -> Result<get_status::Output, XrpcError> {
        let now_ms = crate::maintenance::now_ms(self.account);
        crate::status::page::snapshot(
            self.config,
            self.account,
            cx.subscribers.unwrap_or(0),
            now_ms,
        )
    }

    async fn get_account_status(
        &self,
        _cx: &RequestContext,
        _params: get_account_status::Params,
    ) -> Result<get_account_status::Output, XrpcError> {
        let db = self.account.sql.as_ref();
        let account = crate::storage::account::get_account(db)?;
        let datetime = |ms: i64| Datetime::from_unix_micros(u64::try_from(ms).unwrap_or(0) * 1000);
        Ok(get_account_status::Output {
            status: account
                .as_ref()
                .map_or(AccountStatus::Active, |a| a.status)
                .as_str()
                .to_owned()
                .into(),
            status_changed_at: account
                .as_ref()
                .and_then(|a| a.status_changed_ms)
                .map(datetime),
            // Stored as the lexicon checked it; one that no longer parses is not shown.
            delete_after: crate::storage::account::delete_after(db)?
                .and_then(|d| Datetime::new(d).ok()),
        })
    }
}

impl ComAtprotoServer for Api<'_> {
    const SERVES_CREATE_ACCOUNT: bool = true;
    const SERVES_DESCRIBE_SERVER: bool = true;
    const SERVES_CREATE_SESSION: bool = true;
    const SERVES_GET_SESSION: bool = true;
    const SERVES_REFRESH_SESSION: bool = true;
    const SERVES_DELETE_SESSION: bool = true;
    const SERVES_CREATE_APP_PASSWORD: bool = true;
    const SERVES_LIST_APP_PASSWORDS: bool = true;
    const SERVES_REVOKE_APP_PASSWORD: bool = true;
    const SERVES_GET_SERVICE_AUTH: bool = true;
    const SERVES_ACTIVATE_ACCOUNT: bool = true;
    const SERVES_DEACTIVATE_ACCOUNT: bool = true;
    const SERVES_CHECK_ACCOUNT_STATUS: bool = true;

    async fn describe_server(
        &self,
        _cx: &RequestContext,
        _params: describe_server::Params,
    ) -> Result<describe_server::Output, XrpcError> {
        let did = Did::new(self.config.service_did())
            .map_err(|e| XrpcError::internal_message(format!("service DID: {e}")))?;
        Ok(describe_server::Output {
            did,
            // One account per deployment, configured at deploy time: no sign-ups, no handle domains.
            available_user_domains: Vec::new(),
            invite_code_required: Some(true),
            phone_verification_required: Some(false),
            blob_upload_limit: i64::try_from(self.config.blob_upload_limit).ok(),
            contact: None,
            links: None,
        })
    }

    async fn create_account(
        &self,
        cx: &RequestContext,
        _params: create_account::Params,
        input: create_account::Input,
    ) -> Result<create_account::Output, XrpcError> {
        let ours = self.config.did.as_str();
        // One account lives here: it arrives with its DID (a migration), never new.
        let Some(did) = input.did.as_ref() else {
            return Err(XrpcError::invalid_request(format!(
                "This PDS hosts one account, {ours}: bring it with its DID and a service token \
                 from its current PDS"
            )));
        };
        if did.as_str() != ours {
            return Err(XrpcError::invalid_request(format!(
                "This PDS hosts {ours} only"
            )));
        }
        if input.plc_op.is_some() {
            return Err(XrpcError::invalid_request(
                "Unsupported input: plcOp (submit PLC operations with submitPlcOperation)",
            ));
        }
        let token = cx
            .authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                XrpcError::authentication_required("Missing auth to create account with did")
            })?;
        let key = self
            .verify_account_service_token(token, create_account::NSID)
            .await?;
        let db = self.account.sql.as_ref();
        let state = SqlAuthStore::new(db, ours).account_state()?;
        // The account arrives from a PDS whose key signs for it. Once the DID names this PDS's
        // key, the account is here (activated or not): anyone with a session could mint such
        // a token, and a second createAccount would replace the password.
        let ours_signs = key.to_did_key() == self.config.signing_key.public_key().to_did_key();
        if state.status != AccountStatus::Deactivated || ours_signs {
            return Err(XrpcError::invalid_request(
                "Account already exists: it is hosted on this PDS",
            ));
        }
        let password = input
            .password
            .as_deref()
            .ok_or_else(|| XrpcError::invalid_request("Password is required"))?;
        if password.len() > crate::auth::session::MAX_PASSWORD_LEN {
            return Err(XrpcError::declared("InvalidPassword", "Password too long"));
        }
        let handle = self.accept_handle(&input.handle).await?;
        let hash = crate::password::hash(password).map_err(XrpcError::internal_message)?;
        db.transaction(|| -> Result<(), crate::storage::StorageError> {
            crate::storage::account::set_handle(db, Some(handle.as_str()))?;
            // Every earlier session ends with the old password.
            crate::storage::account::set_password_hash(db, &hash)
        })?;
        self.account.forget_effective_config();
        let pair =
            self.with_auth(|auth| auth.open_session(crate::auth::AccessScope::Full, None))?;
        let did_doc = self
            .own_did_document()
            .await
            .ok()
            .and_then(|doc| pds_api::runtime::value::Value::from_json(&doc).ok());
        Ok(create_account::Output {
            access_jwt: pair.access_jwt,
            refresh_jwt: pair.refresh_jwt,
            did: did.clone(),
            did_doc,
            handle,
        })
    }

    async fn create_session(
        &self,
        _cx: &RequestContext,
        _params: create_session::Params,
        input: create_session::Input,
    ) -> Result<create_session::Output, XrpcError> {
        let mut out = self.with_auth(|auth| auth.create_session(&input))?;
        // The login may have replaced an outdated password hash: the identity is read again.
        if crate::password::needs_rehash(&self.config.password_hash) {
            self.account.forget_effective_config();
        }
        out.did_doc = self.session_did_document().await;
        Ok(out)
    }

    async fn get_session(
        &self,
        cx: &RequestContext,
        _params: get_session::Params,
    ) -> Result<get_session::Output, XrpcError> {
        let mut out = self.with_auth(|auth| auth.get_session(&cx.caller))?;
        out.did_doc = self.session_did_document().await;
        Ok(out)
    }

    async fn refresh_session(
        &self,
        cx: &RequestContext,
        _params: refresh_session::Params,
    ) -> Result<refresh_session::Output, XrpcError> {
        let mut out = self.with_auth(|auth| auth.refresh_session(&cx.caller))?;
        out.did_doc = self.session_did_document().await;
        Ok(out)
    }

    async fn delete_session(
        &self,
        cx: &RequestContext,
        _params: delete_session::Params,
    ) -> Result<(), XrpcError> {
        self.with_auth(|auth| auth.delete_session(&cx.caller))
    }

    async fn create_app_password(
        &self,
        cx: &RequestContext,
        _params: create_app_password::Params,
        input: create_app_password::Input,
    ) -> Result<create_app_password::Output, XrpcError> {
        self.with_auth(|auth| auth.create_app_password(&cx.caller, &input))
    }

    async fn list_app_passwords(
        &self,
        cx: &RequestContext,
        _params: list_app_passwords::Params,
    ) -> Result<list_app_passwords::Output, XrpcError> {
        self.with_auth(|auth| auth.list_app_passwords(&cx.caller))
    }

    async fn revoke_app_password(
        &self,
        cx: &RequestContext,
        _params: revoke_app_password::Params,
        input: revoke_app_password::Input,
    ) -> Result<(), XrpcError> {
        self.with_auth(|auth| auth.revoke_app_password(&cx.caller, &input))
    }

    async fn get_service_auth(
        &self,
        cx: &RequestContext,
        params: get_service_auth::Params,
    ) -> Result<get_service_auth::Output, XrpcError> {
        self.with_auth(|auth| auth.get_service_auth(&cx.caller, &params))
    }

    async fn activate_account(
        &self,
        cx: &RequestContext,
        _params: activate_account::Params,
    ) -> Result<(), XrpcError> {
        // The network must find the account here before it is announced (as the reference).
        if let Some(problem) = self.did_document_problem().await? {
            return Err(XrpcError::invalid_request(problem));
        }
        self.with_auth(|auth| {
            auth.activate_account(&cx.caller, || {
                crate::identity_events::activation_events(self.config, self.account)
            })
        })
        .map(|_changed| ())
    }

    async fn deactivate_account(
        &self,
        cx: &RequestContext,
        _params: deactivate_account::Params,
        input: deactivate_account::Input,
    ) -> Result<(), XrpcError> {
        let db = self.account.sql.as_ref();
        // The status and the deleteAfter change together or not at all.
        db.transaction(|| -> Result<(), XrpcError> {
            self.with_auth(|auth| {
                auth.deactivate_account(&cx.caller, &input, || {
                    Ok(crate::identity_events::deactivation_events(
                        self.config,
                        self.account,
                    ))
                })
            })?;
            // Kept to show the owner (dev.rustpds.server.getAccountStatus); a deactivation
            // repeated with another deleteAfter replaces it.
            let delete_after = input.delete_after.as_ref().map(|d| d.as_str());
            crate::storage::account::set_delete_after(db, delete_after)?;
            Ok(())
        })
    }

    async fn check_account_status(
        &self,
        _cx: &RequestContext,
        _params: check_account_status::Params,
    ) -> Result<check_account_status::Output, XrpcError> {
        let db = self.account.sql.as_ref();
        let tally = crate::storage::repo_store::tally(db)?;
        let preferences = db
            .query_opt("SELECT COUNT(*) FROM preferences", &[])?
            .map_or(Ok(0), |row| row.integer(0))?;
        let root = self.account.head(self.config)?;
        let state = SqlAuthStore::new(db, self.config.did.as_str()).account_state()?;
        let activated = state.status == AccountStatus::Active;
        Ok(check_account_status::Output {
            activated,
            valid_did: matches!(self.did_document_problem().await, Ok(None)),
            repo_commit: CidString::new(crate::data::cid_string(&root.commit_cid))
                .map_err(|e| XrpcError::internal_message(format!("repo commit: {e}")))?,
            repo_rev: root.rev,
            repo_blocks: tally.blocks,
            indexed_records: tally.records,
            private_state_values: preferences,
            expected_blobs: tally.expected_blobs,
            imported_blobs: tally.imported_blobs,
        })
    }
}
