//! The passkey flows of the pages: registering one (from the one-time link `pds passkey add`
//! prints) and signing in with one on the authorize page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::passkey::{self, CredentialKey};
use super::store::{token_hash, OAuthStore, StoredPasskey};
use crate::account::Account;
use crate::config::Config;
use crate::first_error::FirstError;
use crate::http::{HttpRequest, HttpResponse};
use crate::maintenance::now_ms;

/// The registration page's path.
pub const REGISTER_PATH: &str = "/passkey/register";
/// How long a registration link works.
pub const LINK_TTL_MS: i64 = 10 * 60 * 1000;

/// The ids of the stored passkeys.
fn passkey_ids(account: &Account) -> Vec<String> {
    OAuthStore::new(account.sql.as_ref())
        .passkeys()
        .map(|all| all.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
}

/// The passkey sign-in options of the authorize page for request `request_id`, when the owner
/// has passkeys: the challenge is bound to the request, and derived, not stored.
pub fn sign_in_options(
    config: &Config,
    account: &Account,
    request_id: &str,
) -> Option<serde_json::Value> {
    let ids = passkey_ids(account);
    (!ids.is_empty()).then(|| {
        crate::data::json::JsonWriter::new()
            .str(
                "challenge",
                &passkey::challenge(config, "sign-in", request_id),
            )
            .str("rpId", passkey::rp_id(config))
            .value("ids", ids.into())
            .finish()
    })
}

/// The browser's answer to `navigator.credentials.get`, as the page's script sends it.
struct Assertion {
    id: String,
    client_data_json: String,
    authenticator_data: String,
    signature: String,
}

impl Assertion {
    fn parse(json: &str) -> Result<Assertion, String> {
        let o = crate::data::json::JsonObject::parse(json.as_bytes())?;
        let mut e = FirstError::new();
        let v = Assertion {
            id: e.keep(o.str("id")),
            client_data_json: e.keep(o.str("clientDataJSON")),
            authenticator_data: e.keep(o.str("authenticatorData")),
            signature: e.keep(o.str("signature")),
        };
        e.finish(v)
    }
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "not base64url".to_owned())
}

/// Checks a passkey sign-in for authorization request `request_id`, and records the
/// passkey's new counter.
pub async fn sign_in(
    config: &Config,
    account: &Account,
    request_id: &str,
    assertion: &str,
) -> Result<(), String> {
    let a = Assertion::parse(assertion).map_err(|_| "malformed assertion")?;
    let store = OAuthStore::new(account.sql.as_ref());
    let stored = store
        .passkey(&a.id)
        .map_err(|e| e.to_string())?
        .ok_or("unknown passkey")?;
    let key = CredentialKey::from_stored(&stored.public_key).ok_or("unreadable stored key")?;
    let mut e = FirstError::new();
    let signed = passkey::SignedAssertion {
        client_data_json: e.keep(b64(&a.client_data_json)),
        authenticator_data: e.keep(b64(&a.authenticator_data)),
        signature: e.keep(b64(&a.signature)),
    };
    let signed = e.finish(signed)?;
    let count = passkey::verify_assertion(
        config,
        account.fast_verify(),
        &key,
        u32::try_from(stored.sign_count).unwrap_or(u32::MAX),
        &passkey::challenge(config, "sign-in", request_id),
        &signed,
    )
    .await?;
    if !store
        .passkey_used(
            &stored.id,
            stored.sign_count,
            i64::from(count),
            now_ms(account),
        )
        .map_err(|e| e.to_string())?
    {
        return Err("the passkey was used at the same time elsewhere".into());
    }
    Ok(())
}

/// The registration link's name for `token`, while it is valid.
fn link(account: &Account, token: &str) -> Option<String> {
    OAuthStore::new(account.sql.as_ref())
        .passkey_link(&token_hash(token), now_ms(account))
        .ok()
        .flatten()
}

fn invalid_link() -> HttpResponse {
    super::page::message_page(
        400,
        "This link does not work",
        "It is wrong, was used already, or expired (links work for 10 minutes). Run `pds passkey add` again.",
    )
}

/// `GET /passkey/register?token=…`: the page that creates the passkey in the browser.
pub fn register_page(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    let token = super::parameters(req, true)
        .ok()
        .and_then(|p| p.get("token").cloned())
        .unwrap_or_default();
    let Some(name) = link(account, &token) else {
        return invalid_link();
    };
    let user_id = URL_SAFE_NO_PAD.encode(Sha256::digest(config.did.as_str().as_bytes()));
    let options = crate::data::json::JsonWriter::new()
        .bool("register", true)
        .str(
            "challenge",
            &passkey::challenge(config, "register", &token_hash(&token)),
        )
        .str("rpId", passkey::rp_id(config))
        .str("rpName", &config.hostname)
        .str("userId", &user_id)
        .str("userName", config.handle.as_str())
        .value("ids", passkey_ids(account).into())
        .finish();
    super::page::register_page(&token, &name, config.handle.as_str(), &options)
}

/// The browser's answer to `navigator.credentials.create`.
struct Attestation {
    id: String,
    client_data_json: String,
    attestation_object: String,
}

impl Attestation {
    fn parse(json: &str) -> Result<Attestation, String> {
        let o = crate::data::json::JsonObject::parse(json.as_bytes())?;
        let mut e = FirstError::new();
        let v = Attestation {
            id: e.keep(o.str("id")),
            client_data_json: e.keep(o.str("clientDataJSON")),
            attestation_object: e.keep(o.str("attestationObject")),
        };
        e.finish(v)
    }
}

/// `POST /passkey/register`: checks the new credential and stores it; the link is spent.
pub fn register(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    let Ok(form) = super::parameters(req, false) else {
        return invalid_link();
    };
    let token = form.get("token").cloned().unwrap_or_default();
    let Some(name) = link(account, &token) else {
        return invalid_link();
    };
    let refused = |why: String| super::page::message_page(400, "The passkey was not added", &why);
    let attestation = match form
        .get("credential")
        .and_then(|c| Attestation::parse(c).ok())
    {
        Some(a) => a,
        None => return refused("The browser sent no passkey.".into()),
    };
    let parts = (
        b64(&attestation.client_data_json),
        b64(&attestation.attestation_object),
    );
    let (Ok(client_data), Ok(object)) = parts else {
        return refused("The browser's answer is malformed.".into());
    };
    let challenge = passkey::challenge(config, "register", &token_hash(&token));
    let credential = match passkey::verify_registration(config, &challenge, &client_data, &object) {
        Ok(c) if c.id == attestation.id.trim_end_matches('=') => c,
        Ok(_) => return refused("The credential's id does not match.".into()),
        Err(why) => return refused(why),
    };
    let store = OAuthStore::new(account.sql.as_ref());
    let stored = StoredPasskey {
        id: credential.id,
        public_key: credential.key.to_stored(),
        name: name.clone(),
        sign_count: i64::from(credential.sign_count),
        created_ms: now_ms(account),
        last_used_ms: None,
    };
    match store.insert_passkey(&stored) {
        Ok(true) => {}
        Ok(false) => return refused("This passkey is registered already.".into()),
        Err(e) => {
            crate::log::error(&format!("passkey: {e}"));
            return refused("The passkey could not be stored. Try again.".into());
        }
    }
    if let Err(e) = store.spend_passkey_link(&token_hash(&token)) {
        crate::log::error(&format!("passkey: {e}"));
    }
    super::page::message_page(
        200,
        "Passkey added",
        &format!("\"{name}\" can now approve apps on the sign-in page instead of the password."),
    )
}
