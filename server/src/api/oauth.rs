//! `dev.rustpds.oauth`: the account owner's view of the apps signed in with OAuth, and signing
//! them out. The policy tables give these to a full password session only.

use pds_api::dev::rustpds::oauth::{list_sessions, revoke_session, DevRustpdsOauth};
use pds_api::runtime::lex::Datetime;
use pds_api::runtime::xrpc::XrpcError;

use super::{Api, RequestContext};
use crate::auth::Permission;
use crate::oauth::client::ClientMetadata;
use crate::oauth::store::OAuthStore;

impl DevRustpdsOauth for Api<'_> {
    const SERVES_LIST_SESSIONS: bool = true;
    const SERVES_REVOKE_SESSION: bool = true;

    async fn list_sessions(
        &self,
        cx: &RequestContext,
        _params: list_sessions::Params,
    ) -> Result<list_sessions::Output, XrpcError> {
        cx.caller.require(Permission::Full)?;
        let store = OAuthStore::new(self.account.sql.as_ref());
        let now = crate::maintenance::now_ms(self.account);
        store.prune_sessions(now)?;
        let sessions = store
            .sessions()?
            .into_iter()
            .map(|s| {
                let client_name = store
                    .cached_client(&s.client_id, 0)
                    .ok()
                    .flatten()
                    .and_then(|m| ClientMetadata::parse(m.as_bytes()).ok())
                    .and_then(|m| m.client_name);
                list_sessions::Session {
                    auth_method: s.auth_method.clone().into(),
                    client_name,
                    created_at: Datetime::from_unix_millis(s.created_ms),
                    expires_at: Datetime::from_unix_millis(
                        s.expires_ms.min(s.refreshed_ms + s.refresh_idle_ms),
                    ),
                    last_refreshed_at: Datetime::from_unix_millis(s.refreshed_ms),
                    id: s.id,
                    client_id: s.client_id,
                    scope: s.scope,
                }
            })
            .collect();
        Ok(list_sessions::Output { sessions })
    }

    async fn revoke_session(
        &self,
        cx: &RequestContext,
        _params: revoke_session::Params,
        input: revoke_session::Input,
    ) -> Result<revoke_session::Output, XrpcError> {
        cx.caller.require(Permission::Full)?;
        if input.id.is_none() == input.client_id.is_none() {
            return Err(XrpcError::invalid_request("Give either id or clientId"));
        }
        let store = OAuthStore::new(self.account.sql.as_ref());
        let ended: Vec<String> = store
            .sessions()?
            .into_iter()
            .filter(|s| {
                input.id.as_deref() == Some(s.id.as_str())
                    || input.client_id.as_deref() == Some(s.client_id.as_str())
            })
            .map(|s| s.id)
            .collect();
        if ended.is_empty() {
            return Err(XrpcError::declared(
                "SessionNotFound",
                "No OAuth session matches",
            ));
        }
        for id in &ended {
            store.delete_session(id)?;
        }
        Ok(revoke_session::Output {
            revoked: i64::try_from(ended.len()).unwrap_or(i64::MAX),
        })
    }
}
