//! The authentication each method needs. Lexicons do not say; this table follows the
//! reference PDS's verifiers per endpoint (packages/pds/src/api). Anything not listed falls
//! back to a rule by namespace (see [`auth_for`]); the variant names are those of
//! `runtime::xrpc::AuthRequirement`.

/// Explicit entries: (NSID, requirement).
const TABLE: &[(&str, &str)] = &[
    // Public reads and account bootstrap: no credentials.
    ("com.atproto.server.describeServer", "None"),
    ("com.atproto.server.createSession", "None"),
    ("com.atproto.server.requestPasswordReset", "None"),
    ("com.atproto.server.resetPassword", "None"),
    ("com.atproto.server.deleteAccount", "None"),
    ("com.atproto.server.reserveSigningKey", "None"),
    ("com.atproto.identity.resolveHandle", "None"),
    ("com.atproto.identity.resolveDid", "None"),
    ("com.atproto.identity.resolveIdentity", "None"),
    ("com.atproto.repo.describeRepo", "None"),
    ("com.atproto.repo.getRecord", "None"),
    ("com.atproto.repo.listRecords", "None"),
    ("com.atproto.label.queryLabels", "None"),
    ("com.atproto.label.subscribeLabels", "None"),
    ("com.atproto.lexicon.resolveLexicon", "None"),
    ("com.atproto.temp.checkHandleAvailability", "None"),
    // createAccount: anonymous, or a service JWT when migrating an existing DID in.
    ("com.atproto.server.createAccount", "Optional"),
    // Session lifecycle with the refresh token.
    ("com.atproto.server.refreshSession", "Refresh"),
    ("com.atproto.server.deleteSession", "Refresh"),
    // Account-level changes need a full session (never an app password).
    ("com.atproto.server.createAppPassword", "AccessFull"),
    ("com.atproto.server.listAppPasswords", "AccessFull"),
    ("com.atproto.server.revokeAppPassword", "AccessFull"),
    ("com.atproto.server.requestAccountDelete", "AccessFull"),
    ("com.atproto.server.requestEmailConfirmation", "AccessFull"),
    ("com.atproto.server.requestEmailUpdate", "AccessFull"),
    ("com.atproto.server.confirmEmail", "AccessFull"),
    ("com.atproto.server.updateEmail", "AccessFull"),
    ("com.atproto.server.activateAccount", "AccessFull"),
    ("com.atproto.server.deactivateAccount", "AccessFull"),
    ("com.atproto.server.getAccountInviteCodes", "AccessFull"),
    (
        "com.atproto.identity.requestPlcOperationSignature",
        "AccessFull",
    ),
    ("com.atproto.identity.signPlcOperation", "AccessFull"),
    ("com.atproto.repo.importRepo", "AccessFull"),
    // Standard access (app passwords allowed).
    ("com.atproto.server.getSession", "Access"),
    ("com.atproto.server.checkAccountStatus", "Access"),
    ("com.atproto.server.getServiceAuth", "Access"),
    (
        "com.atproto.identity.getRecommendedDidCredentials",
        "Access",
    ),
    ("com.atproto.identity.submitPlcOperation", "AccessFull"),
    ("com.atproto.identity.updateHandle", "AccessFull"),
    ("com.atproto.repo.createRecord", "Access"),
    ("com.atproto.repo.putRecord", "Access"),
    ("com.atproto.repo.deleteRecord", "Access"),
    ("com.atproto.repo.applyWrites", "Access"),
    ("com.atproto.repo.uploadBlob", "AccessOrService"),
    ("com.atproto.repo.listMissingBlobs", "Access"),
    ("com.atproto.moderation.createReport", "Access"),
    // Operator actions.
    ("com.atproto.server.createInviteCode", "Admin"),
    ("com.atproto.server.createInviteCodes", "Admin"),
];

/// The requirement for one method: the table, else by namespace: `com.atproto.admin.*` is
/// admin-only, `com.atproto.sync.*` is public (credentials optional, used to see a deactivated
/// repo), `chat.bsky.*` needs a privileged token (the reference refuses plain app passwords
/// for chat), everything else (AppView, Ozone, com.atproto.temp) needs standard access.
pub fn auth_for(nsid: &str) -> &'static str {
    if let Some((_, a)) = TABLE.iter().find(|(n, _)| *n == nsid) {
        return a;
    }
    if nsid.starts_with("com.atproto.admin.") {
        "Admin"
    } else if nsid.starts_with("com.atproto.sync.") {
        "Optional"
    } else if nsid.starts_with("chat.bsky.") {
        "AccessPrivileged"
    } else {
        "Access"
    }
}
