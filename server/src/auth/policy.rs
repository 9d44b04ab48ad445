//! The per-method auth policy: which credentials each XRPC method needs, in one table.
//!
//! Lexicons do not say, so the generated method metadata carries no auth; the server decides
//! here, once, for every method the dispatcher knows. The entries follow the reference PDS's
//! verifiers per endpoint (packages/pds/src/api). A method not in [`TABLE`] falls back to a
//! rule by namespace (see [`requirement`]).
//!
//! The requirement is checked once before the handler ([`super::Auth::authenticate`]);
//! handlers ask the resulting `Caller` for anything finer (a collection, an audience).

pub use pds_api::runtime::xrpc::AuthRequirement;

use AuthRequirement as R;

/// Explicit entries: (NSID, requirement). Each NSID appears once and names a known method
/// (the tests check both).
pub const TABLE: &[(&str, AuthRequirement)] = &[
    // Public reads and account bootstrap: no credentials.
    ("com.atproto.server.describeServer", R::None),
    ("com.atproto.server.createSession", R::None),
    ("com.atproto.server.requestPasswordReset", R::None),
    ("com.atproto.server.resetPassword", R::None),
    ("com.atproto.server.deleteAccount", R::None),
    ("com.atproto.server.reserveSigningKey", R::None),
    ("com.atproto.identity.resolveHandle", R::None),
    ("com.atproto.repo.describeRepo", R::None),
    ("com.atproto.repo.getRecord", R::None),
    ("com.atproto.repo.listRecords", R::None),
    ("com.atproto.label.queryLabels", R::None),
    ("com.atproto.label.subscribeLabels", R::None),
    ("com.atproto.lexicon.resolveLexicon", R::None),
    ("com.atproto.temp.checkHandleAvailability", R::None),
    // createAccount: a service JWT from the DID's current key, which the handler verifies
    // itself (the key comes from the DID document, fetched: no synchronous check can).
    ("com.atproto.server.createAccount", R::None),
    // Session lifecycle with the refresh token.
    ("com.atproto.server.refreshSession", R::Refresh),
    ("com.atproto.server.deleteSession", R::Refresh),
    // Account-level changes need a full session (never an app password).
    ("com.atproto.server.createAppPassword", R::AccessFull),
    ("com.atproto.server.listAppPasswords", R::AccessFull),
    ("com.atproto.server.revokeAppPassword", R::AccessFull),
    ("com.atproto.server.requestAccountDelete", R::AccessFull),
    ("com.atproto.server.requestEmailConfirmation", R::AccessFull),
    ("com.atproto.server.requestEmailUpdate", R::AccessFull),
    ("com.atproto.server.confirmEmail", R::AccessFull),
    ("com.atproto.server.updateEmail", R::AccessFull),
    ("com.atproto.server.activateAccount", R::AccessFull),
    ("com.atproto.server.deactivateAccount", R::AccessFull),
    ("com.atproto.server.getAccountInviteCodes", R::AccessFull),
    (
        "com.atproto.identity.requestPlcOperationSignature",
        R::AccessFull,
    ),
    ("com.atproto.identity.signPlcOperation", R::AccessFull),
    ("com.atproto.repo.importRepo", R::AccessFull),
    ("dev.rustpds.server.changePassword", R::AccessFull),
    ("dev.rustpds.identity.getPlcOperationToken", R::AccessFull),
    // The owner's view of the apps signed in with OAuth.
    ("dev.rustpds.oauth.listSessions", R::AccessFull),
    ("dev.rustpds.oauth.revokeSession", R::AccessFull),
    // The owner's passkeys.
    ("dev.rustpds.passkey.createRegistration", R::AccessFull),
    ("dev.rustpds.passkey.listPasskeys", R::AccessFull),
    ("dev.rustpds.passkey.deletePasskey", R::AccessFull),
    // Standard access (app passwords allowed).
    // Resolving others makes this PDS fetch documents from their hosts: for its own callers
    // only, as the reference (which passes these to the AppView with the caller's token).
    ("com.atproto.identity.resolveDid", R::Access),
    ("com.atproto.identity.resolveIdentity", R::Access),
    ("com.atproto.identity.refreshIdentity", R::Access),
    ("com.atproto.server.getSession", R::Access),
    ("com.atproto.server.checkAccountStatus", R::Access),
    ("dev.rustpds.server.getAccountStatus", R::Access),
    // What the status page shows: public information only.
    ("dev.rustpds.server.getStatus", R::None),
    ("com.atproto.server.getServiceAuth", R::Access),
    (
        "com.atproto.identity.getRecommendedDidCredentials",
        R::Access,
    ),
    // Identity changes: a full session, like the account-level changes above.
    ("com.atproto.identity.submitPlcOperation", R::AccessFull),
    ("com.atproto.identity.updateHandle", R::AccessFull),
    ("com.atproto.repo.createRecord", R::Access),
    ("com.atproto.repo.putRecord", R::Access),
    ("com.atproto.repo.deleteRecord", R::Access),
    ("com.atproto.repo.applyWrites", R::Access),
    ("com.atproto.repo.uploadBlob", R::AccessOrService),
    ("com.atproto.repo.listMissingBlobs", R::Access),
    ("com.atproto.moderation.createReport", R::Access),
    // Operator actions.
    ("com.atproto.server.createInviteCode", R::Admin),
    ("com.atproto.server.createInviteCodes", R::Admin),
];

/// The requirement of one method: its [`TABLE`] entry, else by namespace:
/// - `com.atproto.admin.*`: admin-only;
/// - `com.atproto.sync.*`: public, credentials optional (they let the owner see a
///   deactivated repo);
/// - `chat.bsky.*`: a privileged token (the reference refuses plain app passwords for chat);
/// - everything else (AppView, Ozone, `com.atproto.temp`, unknown NSIDs): standard access.
pub fn requirement(nsid: &str) -> AuthRequirement {
    if let Some((_, r)) = TABLE.iter().find(|(n, _)| *n == nsid) {
        return *r;
    }
    if nsid.starts_with("com.atproto.admin.") {
        R::Admin
    } else if nsid.starts_with("com.atproto.sync.") {
        R::Optional
    } else if nsid.starts_with("chat.bsky.") {
        R::AccessPrivileged
    } else {
        R::Access
    }
}

/// What an OAuth token needs to call a method the account serves (the reference's table,
/// `../shared/reference/oauth.md` §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthRule {
    /// Never with OAuth: account management belongs to the owner's password session.
    Never,
    /// Any token (it always carries `atproto`).
    Any,
    /// The handler asks for the exact permission: a collection and action (`repo:`), a blob
    /// type (`blob:`), a method and audience (`rpc:` for service tokens).
    Handler,
    /// `identity:<attr>`.
    Identity(&'static str),
    /// `account:<attr>?action=manage`.
    AccountManage(&'static str),
    /// `rpc:<method>?aud=<the AppView>#bsky_appview`: what the reference proxies to the AppView
    /// but this PDS answers itself (preferences, identity lookups).
    AppView,
}

/// OAuth's rule per method, for every method the account serves that takes credentials (a test
/// checks the coverage). A method not listed refuses OAuth callers: it fails closed.
pub const OAUTH_TABLE: &[(&str, OAuthRule)] = &[
    ("com.atproto.server.getSession", OAuthRule::Any),
    ("com.atproto.server.checkAccountStatus", OAuthRule::Any),
    ("dev.rustpds.server.getAccountStatus", OAuthRule::Any),
    (
        "com.atproto.identity.getRecommendedDidCredentials",
        OAuthRule::Any,
    ),
    ("com.atproto.repo.listMissingBlobs", OAuthRule::Any),
    // The service token's method and audience are checked against `rpc:` by the handler.
    ("com.atproto.server.getServiceAuth", OAuthRule::Handler),
    ("com.atproto.repo.createRecord", OAuthRule::Handler),
    ("com.atproto.repo.putRecord", OAuthRule::Handler),
    ("com.atproto.repo.deleteRecord", OAuthRule::Handler),
    ("com.atproto.repo.applyWrites", OAuthRule::Handler),
    ("com.atproto.repo.uploadBlob", OAuthRule::Handler),
    (
        "com.atproto.repo.importRepo",
        OAuthRule::AccountManage("repo"),
    ),
    (
        "com.atproto.identity.updateHandle",
        OAuthRule::Identity("handle"),
    ),
    (
        "com.atproto.identity.submitPlcOperation",
        OAuthRule::Identity("*"),
    ),
    (
        "com.atproto.identity.signPlcOperation",
        OAuthRule::Identity("*"),
    ),
    (
        "com.atproto.identity.requestPlcOperationSignature",
        OAuthRule::Identity("*"),
    ),
    (
        "dev.rustpds.identity.getPlcOperationToken",
        OAuthRule::Identity("*"),
    ),
    ("com.atproto.identity.resolveDid", OAuthRule::AppView),
    ("com.atproto.identity.resolveIdentity", OAuthRule::AppView),
    ("com.atproto.identity.refreshIdentity", OAuthRule::AppView),
    ("app.bsky.actor.getPreferences", OAuthRule::AppView),
    ("app.bsky.actor.putPreferences", OAuthRule::AppView),
    (
        "com.atproto.server.requestEmailConfirmation",
        OAuthRule::AccountManage("email"),
    ),
    (
        "com.atproto.server.confirmEmail",
        OAuthRule::AccountManage("email"),
    ),
    ("com.atproto.server.createAppPassword", OAuthRule::Never),
    ("com.atproto.server.listAppPasswords", OAuthRule::Never),
    ("com.atproto.server.revokeAppPassword", OAuthRule::Never),
    ("com.atproto.server.activateAccount", OAuthRule::Never),
    ("com.atproto.server.deactivateAccount", OAuthRule::Never),
    ("com.atproto.server.requestAccountDelete", OAuthRule::Never),
    ("com.atproto.server.requestEmailUpdate", OAuthRule::Never),
    ("com.atproto.server.updateEmail", OAuthRule::Never),
    ("com.atproto.server.getAccountInviteCodes", OAuthRule::Never),
    ("com.atproto.server.refreshSession", OAuthRule::Never),
    ("com.atproto.server.deleteSession", OAuthRule::Never),
    ("dev.rustpds.server.changePassword", OAuthRule::Never),
    ("dev.rustpds.oauth.listSessions", OAuthRule::Never),
    ("dev.rustpds.oauth.revokeSession", OAuthRule::Never),
    ("dev.rustpds.passkey.createRegistration", OAuthRule::Never),
    ("dev.rustpds.passkey.listPasskeys", OAuthRule::Never),
    ("dev.rustpds.passkey.deletePasskey", OAuthRule::Never),
];

/// OAuth's rule for a method: its [`OAUTH_TABLE`] entry; `com.atproto.sync.*` reads take any
/// token (credentials there only let the owner read a deactivated repository); anything else
/// is refused.
pub fn oauth_rule(nsid: &str) -> OAuthRule {
    if let Some((_, r)) = OAUTH_TABLE.iter().find(|(n, _)| *n == nsid) {
        return *r;
    }
    if nsid.starts_with("com.atproto.sync.") {
        OAuthRule::Any
    } else {
        OAuthRule::Never
    }
}

/// Checks an OAuth caller against the method's rule (the handler checks [`OAuthRule::Handler`]
/// methods itself).
pub fn check_oauth(
    nsid: &str,
    caller: &super::verifier::OAuthCaller,
    config: &crate::config::Config,
) -> Result<(), pds_api::runtime::xrpc::XrpcError> {
    let missing = |scope: String| super::verifier::insufficient_scope(&scope);
    match oauth_rule(nsid) {
        OAuthRule::Never => Err(super::verifier::oauth_forbidden()),
        OAuthRule::Any | OAuthRule::Handler => Ok(()),
        OAuthRule::Identity(attr) => caller.scopes.identity(attr).map_err(missing),
        OAuthRule::AccountManage(attr) => caller.scopes.account(attr, true).map_err(missing),
        OAuthRule::AppView => caller
            .scopes
            .rpc(nsid, &format!("{}#bsky_appview", config.proxy.appview.did))
            .map_err(missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pds_api::methods::METHODS;

    /// Every method the account serves that takes credentials has an OAuth rule, written
    /// down, not left to a fallback; and the rules cover nothing the server does not know.
    #[test]
    fn every_served_method_has_an_oauth_rule() {
        type Served<'a> = crate::api::Api<'a>;
        let mut missing = Vec::new();
        for meta in METHODS {
            let nsid = meta.nsid;
            let served = pds_api::methods::serves::<Served<'_>>(nsid)
                || nsid == "com.atproto.repo.importRepo"
                || nsid == "com.atproto.repo.uploadBlob";
            if !served || requirement(nsid) == R::None || nsid.starts_with("com.atproto.sync.") {
                continue;
            }
            if !OAUTH_TABLE.iter().any(|(n, _)| *n == nsid) {
                missing.push(nsid);
            }
        }
        assert!(
            missing.is_empty(),
            "served methods without an OAuth rule: {missing:?}"
        );
        for (nsid, _) in OAUTH_TABLE {
            assert!(
                known(nsid),
                "{nsid} has an OAuth rule but is not a known method"
            );
        }
        assert_eq!(
            oauth_rule("com.atproto.server.createAppPassword"),
            OAuthRule::Never
        );
        assert_eq!(oauth_rule("com.example.unlisted"), OAuthRule::Never);
        assert_eq!(oauth_rule("com.atproto.sync.getRepo"), OAuthRule::Any);
    }
    use std::collections::BTreeSet;

    fn known(nsid: &str) -> bool {
        METHODS.iter().any(|m| m.nsid == nsid)
    }

    #[test]
    fn table_entries_are_unique_known_methods() {
        let mut seen = BTreeSet::new();
        for (nsid, _) in TABLE {
            assert!(seen.insert(*nsid), "{nsid} is listed twice");
            assert!(
                known(nsid),
                "{nsid} is in the policy but not a known method"
            );
        }
    }

    /// Every method the dispatcher knows gets a requirement: its own entry, or a namespace
    /// rule. A `com.atproto` method outside the rule-covered namespaces must have an entry, so a
    /// lexicon update that adds one (say `com.atproto.server.newThing`) fails here until someone
    /// decides its requirement.
    #[test]
    fn every_known_method_gets_a_requirement() {
        // Reviewed: the default (standard access) is right for these.
        const REVIEWED_FALLBACKS: &[&str] = &["com.atproto.identity.refreshIdentity"];
        assert!(
            METHODS.len() > 100,
            "the PDS knows com.atproto and app.bsky"
        );
        let mut unlisted = Vec::new();
        for meta in METHODS {
            let nsid = meta.nsid;
            let r = requirement(nsid);
            if let Some((_, entry)) = TABLE.iter().find(|(n, _)| *n == nsid) {
                assert_eq!(r, *entry, "{nsid}");
            } else if nsid.starts_with("com.atproto.admin.") {
                assert_eq!(r, R::Admin, "{nsid}");
            } else if nsid.starts_with("com.atproto.sync.") {
                assert_eq!(r, R::Optional, "{nsid}");
            } else if nsid.starts_with("chat.bsky.") {
                assert_eq!(r, R::AccessPrivileged, "{nsid}");
            } else if nsid.starts_with("com.atproto.temp.")
                || !nsid.starts_with("com.atproto.")
                || REVIEWED_FALLBACKS.contains(&nsid)
            {
                assert_eq!(r, R::Access, "{nsid}");
            } else {
                unlisted.push(nsid);
            }
        }
        assert!(
            unlisted.is_empty(),
            "com.atproto methods without a policy entry: {unlisted:?}"
        );
        assert_eq!(requirement("com.atproto.admin.getAccountInfo"), R::Admin);
        assert_eq!(requirement("com.atproto.sync.getRepo"), R::Optional);
        assert_eq!(requirement("app.bsky.feed.getTimeline"), R::Access);
        assert_eq!(
            requirement("chat.bsky.convo.listConvos"),
            R::AccessPrivileged
        );
        // Unknown methods are answered 501 before auth; the rule still fails closed.
        assert_eq!(requirement("com.example.unknown"), R::Access);
    }

    /// Methods that change the account, its credentials or its identity: never an app password.
    #[test]
    fn sensitive_methods_need_a_full_session() {
        for nsid in [
            "com.atproto.server.createAppPassword",
            "com.atproto.server.listAppPasswords",
            "com.atproto.server.revokeAppPassword",
            "com.atproto.server.deactivateAccount",
            "com.atproto.server.activateAccount",
            "com.atproto.server.requestAccountDelete",
            "com.atproto.server.requestEmailUpdate",
            "com.atproto.server.updateEmail",
            "com.atproto.identity.requestPlcOperationSignature",
            "com.atproto.identity.signPlcOperation",
            "com.atproto.identity.submitPlcOperation",
            "com.atproto.identity.updateHandle",
            "com.atproto.repo.importRepo",
        ] {
            assert!(known(nsid), "{nsid} is not a known method");
            assert_eq!(requirement(nsid), R::AccessFull, "{nsid}");
        }
    }

    #[test]
    fn public_and_session_methods() {
        for nsid in [
            "com.atproto.server.describeServer",
            "com.atproto.server.createSession",
            "com.atproto.repo.getRecord",
            "com.atproto.identity.resolveHandle",
        ] {
            assert_eq!(requirement(nsid), R::None, "{nsid}");
        }
        assert_eq!(requirement("com.atproto.server.refreshSession"), R::Refresh);
        assert_eq!(requirement("com.atproto.server.deleteSession"), R::Refresh);
        // Its service token is verified by the handler, with a key from the DID document.
        assert_eq!(requirement("com.atproto.server.createAccount"), R::None);
        assert_eq!(
            requirement("com.atproto.repo.uploadBlob"),
            R::AccessOrService
        );
        assert_eq!(requirement("com.atproto.repo.createRecord"), R::Access);
        assert_eq!(
            requirement("com.atproto.server.createInviteCodes"),
            R::Admin
        );
    }
}
