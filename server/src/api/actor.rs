//! `app.bsky.actor` preferences, stored with the account (the rest of app.bsky is the AppView's).

use pds_api::app::bsky::actor::{get_preferences, put_preferences, AppBskyActor};
use pds_api::runtime::value::Value;
use pds_api::runtime::xrpc::XrpcError;

use super::{Api, RequestContext};
use crate::api::internal;
use crate::auth::{Caller, Permission};

/// Largest stored preferences document, in bytes of JSON.
pub const PREFERENCES_LIMIT: usize = 256 * 1024;

/// Preferences only a full-access session may read or write (the reference's rule: personal
/// details such as the birth date are withheld from app passwords).
const FULL_ACCESS_ONLY: &[&str] = &["app.bsky.actor.defs#personalDetailsPref"];

/// Full sessions see everything; app passwords (and any other caller) do not see personal
/// details.
fn is_full_access(caller: &Caller) -> bool {
    caller.can(Permission::Full)
}

fn type_of(pref: &serde_json::Value) -> &str {
    pref.get("$type").and_then(|t| t.as_str()).unwrap_or("")
}

impl Api<'_> {
    /// The stored preferences as JSON values (an empty list when none were stored).
    fn stored_preferences(&self) -> Result<Vec<serde_json::Value>, XrpcError> {
        match crate::storage::account::get_preferences(self.account.sql.as_ref())? {
            Some(json) => serde_json::from_str(&json).map_err(internal),
            None => Ok(Vec::new()),
        }
    }
}

impl AppBskyActor for Api<'_> {
    const SERVES_GET_PREFERENCES: bool = true;
    const SERVES_PUT_PREFERENCES: bool = true;

    async fn get_preferences(
        &self,
        cx: &RequestContext,
        _params: get_preferences::Params,
    ) -> Result<get_preferences::Output, XrpcError> {
        let full = is_full_access(&cx.caller);
        // Returned exactly as stored.
        let preferences = self
            .stored_preferences()?
            .iter()
            .filter(|p| full || !FULL_ACCESS_ONLY.contains(&type_of(p)))
            .map(|p| Value::from_json(p).map_err(internal))
            .collect::<Result<_, _>>()?;
        Ok(get_preferences::Output { preferences })
    }

    async fn put_preferences(
        &self,
        cx: &RequestContext,
        _params: put_preferences::Params,
        input: put_preferences::Input,
    ) -> Result<(), XrpcError> {
        // Stored exactly as sent (validated against the lexicon, not retyped).
        let incoming: Vec<serde_json::Value> =
            input.preferences.iter().map(Value::to_json).collect();
        if incoming
            .iter()
            .any(|p| !type_of(p).starts_with("app.bsky."))
        {
            return Err(XrpcError::invalid_request(
                "Some preferences are not in the app.bsky namespace",
            ));
        }
        let full = is_full_access(&cx.caller);
        if !full
            && incoming
                .iter()
                .any(|p| FULL_ACCESS_ONLY.contains(&type_of(p)))
        {
            return Err(XrpcError::invalid_request(
                "Do not have authorization to set preferences.",
            ));
        }
        // An app password cannot see full-access preferences, so it must not erase them either.
        let mut stored: Vec<serde_json::Value> = if full {
            Vec::new()
        } else {
            self.stored_preferences()?
                .into_iter()
                .filter(|p| FULL_ACCESS_ONLY.contains(&type_of(p)))
                .collect()
        };
        stored.extend(incoming);
        let json = serde_json::to_string(&stored).map_err(internal)?;
        if json.len() > PREFERENCES_LIMIT {
            return Err(XrpcError::invalid_request(format!(
                "Preferences are too large: {} bytes (at most {PREFERENCES_LIMIT})",
                json.len()
            )));
        }
        Ok(crate::storage::account::put_preferences(
            self.account.sql.as_ref(),
            &json,
        )?)
    }
}
