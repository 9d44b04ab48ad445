//! `dev.rustpds.passkey`: the owner's passkeys. A registration is a one-time link to a page of
//! this PDS (the browser creates the credential there); the policy tables give these methods to
//! a full password session only.

use pds_api::dev::rustpds::passkey::{
    create_registration, delete_passkey, list_passkeys, DevRustpdsPasskey,
};
use pds_api::runtime::lex::{Datetime, Uri};
use pds_api::runtime::xrpc::XrpcError;

use super::{internal, Api, RequestContext};
use crate::auth::Permission;
use crate::oauth::passkey::{CredentialKey, EDDSA, ES256};
use crate::oauth::passkey_pages::{LINK_TTL_MS, REGISTER_PATH};
use crate::oauth::store::{token_hash, OAuthStore};

impl DevRustpdsPasskey for Api<'_> {
    const SERVES_CREATE_REGISTRATION: bool = true;
    const SERVES_DELETE_PASSKEY: bool = true;
    const SERVES_LIST_PASSKEYS: bool = true;

    async fn create_registration(
        &self,
        cx: &RequestContext,
        _params: create_registration::Params,
        input: create_registration::Input,
    ) -> Result<create_registration::Output, XrpcError> {
        cx.caller.require(Permission::Full)?;
        let name = input.name.trim();
        if name.is_empty() {
            return Err(XrpcError::invalid_request("The passkey needs a name"));
        }
        let token = crate::oauth::random_token().map_err(|e| internal(e.description))?;
        let now = crate::maintenance::now_ms(self.account);
        let expires = now + LINK_TTL_MS;
        OAuthStore::new(self.account.sql.as_ref()).insert_passkey_link(
            &token_hash(&token),
            name,
            expires,
            now,
        )?;
        let url = format!("{}{REGISTER_PATH}?token={token}", self.config.public_url());
        Ok(create_registration::Output {
            url: Uri::new(url).map_err(internal)?,
            expires_at: Datetime::from_unix_millis(expires),
        })
    }

    async fn list_passkeys(
        &self,
        cx: &RequestContext,
        _params: list_passkeys::Params,
    ) -> Result<list_passkeys::Output, XrpcError> {
        cx.caller.require(Permission::Full)?;
        let passkeys = OAuthStore::new(self.account.sql.as_ref())
            .passkeys()?
            .into_iter()
            .map(|p| {
                let algorithm = match CredentialKey::from_stored(&p.public_key).map(|k| k.alg()) {
                    Some(ES256) => "ES256",
                    Some(EDDSA) => "EdDSA",
                    _ => "RS256",
                };
                list_passkeys::Passkey {
                    algorithm: algorithm.to_owned().into(),
                    created_at: Datetime::from_unix_millis(p.created_ms),
                    last_used_at: p.last_used_ms.map(Datetime::from_unix_millis),
                    id: p.id,
                    name: p.name,
                }
            })
            .collect();
        Ok(list_passkeys::Output { passkeys })
    }

    async fn delete_passkey(
        &self,
        cx: &RequestContext,
        _params: delete_passkey::Params,
        input: delete_passkey::Input,
    ) -> Result<(), XrpcError> {
        cx.caller.require(Permission::Full)?;
        if !OAuthStore::new(self.account.sql.as_ref()).delete_passkey(&input.id)? {
            return Err(XrpcError::declared(
                "PasskeyNotFound",
                "No passkey has this id",
            ));
        }
        Ok(())
    }
}
