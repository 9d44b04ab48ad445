//! The PDS's implementation of the generated handler traits. Methods not implemented here keep
//! the generated default: 501 MethodNotImplemented through the dispatcher.

mod actor;
mod identity;
pub mod import;
mod oauth;
mod passkey;
pub(crate) mod repo;
mod server;
pub(crate) mod sync;

use pds_api::runtime::xrpc::{Service, XrpcError};

use crate::account::Account;
use crate::auth::{Auth, Caller, SqlAuthStore};
use crate::config::Config;

/// A server fault as the XRPC 500 carrying its detail (logged, then concealed from the client
/// by [`crate::lifecycle::conceal_internal_error`]).
pub(crate) fn internal(e: impl std::fmt::Display) -> XrpcError {
    XrpcError::internal_message(e.to_string())
}

/// The XRPC service of one request: what every handler can reach.
pub struct Api<'a> {
    pub config: &'a Config,
    pub account: &'a Account,
}

/// What a handler knows about the request it serves.
pub struct RequestContext {
    /// The `Range` header (getBlob), if any.
    pub range: Option<String>,
    /// Who is calling, as established by the auth check before dispatch.
    pub caller: Caller,
    /// The `Authorization` header, for the one method that verifies its credentials itself
    /// (createAccount: the service token's key comes from the DID document).
    pub authorization: Option<String>,
    /// The firehose subscribers connected now: known to `dev.rustpds.server.getStatus` only
    /// (the shell is asked for no other method).
    pub subscribers: Option<usize>,
}

impl Api<'_> {
    /// Authenticates a call of `nsid` with what the request presents, as the server's policy
    /// tables require for that method.
    pub fn authenticate(
        &self,
        nsid: &str,
        presented: &crate::auth::Presented<'_>,
    ) -> Result<Caller, XrpcError> {
        self.with_auth(|auth| auth.authenticate_call(nsid, presented))
    }

    /// Runs `f` with the account's authentication (sessions, app passwords, service tokens).
    pub fn with_auth<T>(&self, f: impl FnOnce(&Auth<'_>) -> T) -> T {
        let store = SqlAuthStore::new(self.account.sql.as_ref(), self.config.did.as_str());
        let verified = |proof: &str| self.account.proof_verified(proof);
        f(&Auth::new(self.config, &store, self.account.clock.as_ref())
            .with_oauth(self.account.sql.as_ref(), &verified))
    }
}

impl Service for Api<'_> {
    type Context = RequestContext;
}

// Namespaces with nothing implemented yet: every method answers 501 MethodNotImplemented.
impl pds_api::com::atproto::admin::ComAtprotoAdmin for Api<'_> {}
impl pds_api::com::atproto::label::ComAtprotoLabel for Api<'_> {}
impl pds_api::com::atproto::lexicon::ComAtprotoLexicon for Api<'_> {}
impl pds_api::com::atproto::moderation::ComAtprotoModeration for Api<'_> {}
impl pds_api::com::atproto::temp::ComAtprotoTemp for Api<'_> {}
// Served by the AppView and others (proxying comes later). The macros expand to nothing when
// pds-api is built without the group, and cover it when a workspace build enables it.
impl pds_api::app::bsky::ageassurance::AppBskyAgeassurance for Api<'_> {}
impl pds_api::app::bsky::bookmark::AppBskyBookmark for Api<'_> {}
impl pds_api::app::bsky::contact::AppBskyContact for Api<'_> {}
impl pds_api::app::bsky::draft::AppBskyDraft for Api<'_> {}
impl pds_api::app::bsky::embed::AppBskyEmbed for Api<'_> {}
impl pds_api::app::bsky::feed::AppBskyFeed for Api<'_> {}
impl pds_api::app::bsky::graph::AppBskyGraph for Api<'_> {}
impl pds_api::app::bsky::labeler::AppBskyLabeler for Api<'_> {}
impl pds_api::app::bsky::notification::AppBskyNotification for Api<'_> {}
impl pds_api::app::bsky::unspecced::AppBskyUnspecced for Api<'_> {}
impl pds_api::app::bsky::video::AppBskyVideo for Api<'_> {}
pds_api::unserved_chat_bsky!(Api<'_>);
pds_api::unserved_tools_ozone!(Api<'_>);
