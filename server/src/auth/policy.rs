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

#[cfg(test)]
mod tests {
    use super::*;
    use pds_api::methods::METHODS;
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
