//! The one auth check, run before a handler with the method's [`AuthRequirement`] from the
//! server's policy table ([`super::policy`]): who is calling, with what power, or the exact error the reference PDS
//! sends (clients match on names: the Bluesky app refreshes only on `400 ExpiredToken`).
//!
//! | situation | status | error | message |
//! | --- | --- | --- | --- |
//! | no credentials | 401 | AuthMissing | Authentication Required |
//! | header not `<type> <token>` | 400 | InvalidToken | Malformed authorization header |
//! | unknown scheme / DPoP (OAuth not served yet) | 400 | InvalidToken | Unsupported authorization type: X |
//! | wrong scheme for the method (Basic, ...) | 400 | InvalidToken | Unexpected authorization type |
//! | access token expired | 400 | ExpiredToken | Token has expired |
//! | bad signature, alg, typ (a refresh token as access), audience | 400 | InvalidToken | Token could not be verified |
//! | claims of the wrong shape | 400 | InvalidToken | Malformed token |
//! | scope not allowed here (app password on a full-account method) | 400 | InvalidToken | Bad token scope |
//! | session revoked (deleteSession, app password revoked, refresh reuse) | 400 | ExpiredToken | Token has been revoked |
//! | refresh token without jti | 401 | MissingTokenId | Unexpected missing refresh token id |
//! | repo write while deactivated | 401 | AccountDeactivated | Account is deactivated |
//! | service JWT problems | 401 | BadJwt, JwtExpired, BadJwtAudience, ... | see [`super::service`] |
//! | admin credentials (none configured) | 401 | AuthenticationRequired | Authentication Required |

use pds_api::runtime::xrpc::{AuthRequirement, XrpcError};

use super::jwt;
use super::service::{self, ServiceExpectations};
use super::store::AccountStatus;
use super::tokens::{AccessScope, TokenError};
use super::Auth;
use crate::oauth::scope::{RepoAction, Scopes};

/// Repository writes, refused while the account is deactivated (the reference's
/// `checkDeactivated`). importRepo is not among them: migration imports into a deactivated
/// account.
pub const REFUSED_WHILE_DEACTIVATED: &[&str] = &[
    "com.atproto.repo.applyWrites",
    "com.atproto.repo.createRecord",
    "com.atproto.repo.deleteRecord",
    "com.atproto.repo.putRecord",
];

/// The one method that accepts an expired refresh token: logging out must always work.
pub const DELETE_SESSION: &str = "com.atproto.server.deleteSession";
/// The one method a service JWT may upload with.
/// The method uploads serve (the one method a service token may upload with).
pub(crate) const UPLOAD_BLOB: &str = "com.atproto.repo.uploadBlob";

/// Who is calling, and with what power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (on a method that needs none, or where they are optional).
    Anonymous,
    /// A legacy session access token.
    Access(AccessCaller),
    /// A refresh token (refreshSession, deleteSession).
    Refresh(RefreshCaller),
    /// An inter-service JWT signed by the account's key.
    Service(ServiceCaller),
    /// An OAuth access token, bound to a DPoP key, with its scopes.
    OAuth(OAuthCaller),
}

/// A caller holding an OAuth access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCaller {
    pub did: String,
    pub session_id: String,
    pub client_id: String,
    pub scopes: Scopes,
}

/// The credentials a request presents, and what a DPoP proof must match: the method and
/// path the client called (for the edge's internal steps, those of the client's request,
/// which the edge passes on).
#[derive(Debug, Clone, Default)]
pub struct Presented<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `DPoP` headers (a valid request has at most one).
    pub dpop: Vec<&'a str>,
    /// The client's method.
    pub method: &'a str,
    /// The client's path.
    pub path: &'a str,
    /// A later step of a request the account already authorized (an import's batches): its
    /// DPoP proof was checked and spent then, and may have aged since.
    pub continuation: bool,
}

/// Internal headers carrying the client's method and path to the account's offload steps.
pub const CLIENT_METHOD_HEADER: &str = "x-rustpds-client-method";
/// See [`CLIENT_METHOD_HEADER`].
pub const CLIENT_PATH_HEADER: &str = "x-rustpds-client-path";

impl<'a> Presented<'a> {
    /// What `req` presents. On an internal path (the edge's steps) the method and path are
    /// the client's, as the edge passed them on.
    pub fn of(req: &'a crate::http::HttpRequest) -> Presented<'a> {
        let internal = req.path.starts_with(crate::routes::INTERNAL_PREFIX);
        let (method, path) = if internal {
            (
                req.header(CLIENT_METHOD_HEADER).unwrap_or(""),
                req.header(CLIENT_PATH_HEADER).unwrap_or(""),
            )
        } else {
            (req.method.as_str(), req.path.as_str())
        };
        Presented {
            authorization: req.header("authorization"),
            dpop: crate::oauth::dpop::proof_headers(req),
            method,
            path,
            continuation: false,
        }
    }

    /// The same, for a later step of a request whose first step was authorized: only the edge
    /// makes these (internal paths are closed from outside).
    pub fn continuing(mut self) -> Presented<'a> {
        self.continuation = true;
        self
    }

    /// An `Authorization` header alone (no DPoP proof).
    pub fn authorization(authorization: Option<&'a str>) -> Presented<'a> {
        Presented {
            authorization,
            ..Presented::default()
        }
    }
}

/// A caller holding a session access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessCaller {
    pub did: String,
    pub scope: AccessScope,
    pub session_id: String,
}

/// A caller holding a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCaller {
    pub did: String,
    pub session_id: String,
    /// The token's `jti`.
    pub token_id: String,
    /// Accepted although expired (deleteSession only).
    pub expired: bool,
}

/// A caller presenting a service JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller {
    /// `iss` as sent.
    pub iss: String,
    /// The issuer's DID.
    pub did: String,
    pub aud: String,
    pub lxm: Option<String>,
    pub jti: Option<String>,
}

impl Caller {
    /// The authenticated DID, if any.
    pub fn did(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Access(a) => Some(&a.did),
            Caller::Refresh(r) => Some(&r.did),
            Caller::Service(s) => Some(&s.did),
            Caller::OAuth(o) => Some(&o.did),
        }
    }

    /// For an OAuth caller, whether its scopes grant `permission`, else the scope it lacks.
    fn oauth_grants(o: &OAuthCaller, permission: Permission<'_>) -> Result<(), String> {
        use Permission as P;
        match permission {
            P::Account | P::Session => Ok(()),
            P::RepoWrite { collection, action } => o.scopes.repo(collection, action),
            P::BlobUpload { mime } => o.scopes.blob(mime),
            P::ServiceToken { lxm, aud } => o.scopes.rpc(lxm.unwrap_or("*"), aud),
            P::EmailRead => o.scopes.account("email", false),
            P::Privileged => Err(crate::oauth::scope::TRANSITION_CHAT.into()),
            // Account management, and the legacy refresh flow, are never OAuth's.
            P::Full | P::Refresh => Err("(a full password session)".into()),
        }
    }

    /// Whether this caller holds `permission`.
    pub fn can(&self, permission: Permission<'_>) -> bool {
        use Permission as P;
        match self {
            Caller::Anonymous => false,
            Caller::Refresh(_) => permission == P::Refresh,
            // A service JWT was verified for exactly the method called (`lxm`) and grants
            // nothing beyond calling it: uploadBlob's upload, for a token bound to it (the
            // video service's flow).
            Caller::Service(s) => match permission {
                P::Account => true,
                P::BlobUpload { .. } => s.lxm.as_deref() == Some(UPLOAD_BLOB),
                _ => false,
            },
            Caller::OAuth(o) => Self::oauth_grants(o, permission).is_ok(),
            Caller::Access(a) => match permission {
                P::Account
                | P::Session
                | P::RepoWrite { .. }
                | P::BlobUpload { .. }
                | P::EmailRead => true,
                P::Privileged => a.scope.is_privileged(),
                P::ServiceToken { lxm, .. } => {
                    a.scope.is_privileged()
                        || !lxm.is_some_and(super::session::is_privileged_method)
                }
                P::Full => a.scope == AccessScope::Full,
                P::Refresh => false,
            },
        }
    }

    /// [`Caller::can`], or the reference's error for a token without that power
    /// (400 InvalidToken "Bad token scope").
    pub fn require(&self, permission: Permission<'_>) -> Result<(), XrpcError> {
        if let Caller::OAuth(o) = self {
            return Self::oauth_grants(o, permission).map_err(|scope| insufficient_scope(&scope));
        }
        if self.can(permission) {
            Ok(())
        } else if *self == Caller::Anonymous {
            Err(auth_missing())
        } else {
            Err(invalid_token("Bad token scope"))
        }
    }

    /// The access scope, for session callers.
    pub fn access_scope(&self) -> Option<AccessScope> {
        match self {
            Caller::Access(a) => Some(a.scope),
            _ => None,
        }
    }
}

/// A power code asks a [`Caller`] for ([`Caller::require`]). Every check fails closed: a
/// caller kind that does not say it holds a permission does not hold it. OAuth tokens will be
/// one more caller kind whose scopes answer the same questions (`repo:`, `blob:`, `rpc:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission<'a> {
    /// Any credential of the account: a session (with any app password) or a service JWT that
    /// was checked for the method being called.
    Account,
    /// A session of the account, with any app password (not a service JWT).
    Session,
    /// A session whose app password, if any, is privileged (chat, DMs, privileged service
    /// tokens).
    Privileged,
    /// The account password's own session: account, identity and app-password management.
    Full,
    /// A refresh token (refreshSession, deleteSession).
    Refresh,
    /// `action` on records of `collection`.
    RepoWrite {
        collection: &'a str,
        action: RepoAction,
    },
    /// See the account's email address.
    EmailRead,
    /// Upload a blob of `mime` type.
    BlobUpload { mime: &'a str },
    /// A service token for calling `lxm` (if bound to one) at `aud`. Sessions are judged on
    /// `lxm` alone; `aud` is there for OAuth's `rpc:` scopes, which name both.
    ServiceToken { lxm: Option<&'a str>, aud: &'a str },
}

/// The scheme and credentials of an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials<'a> {
    Bearer(&'a str),
    Basic(&'a str),
    Dpop(&'a str),
}

fn parse_authorization(header: Option<&str>) -> Result<Option<Credentials<'_>>, XrpcError> {
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let mut parts = header.split(' ');
    let (Some(scheme), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid_token("Malformed authorization header"));
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(Credentials::Bearer(token)))
    } else if scheme.eq_ignore_ascii_case("basic") {
        Ok(Some(Credentials::Basic(token)))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Ok(Some(Credentials::Dpop(token)))
    } else {
        Err(invalid_token(format!(
            "Unsupported authorization type: {scheme}"
        )))
    }
}

fn invalid_token(message: impl Into<String>) -> XrpcError {
    XrpcError::declared("InvalidToken", message)
}

/// An OAuth token without the scope a call needs: 403, naming the scope.
pub(crate) fn insufficient_scope(scope: &str) -> XrpcError {
    XrpcError::new(
        403,
        "InsufficientScope",
        format!("Missing required scope \"{scope}\""),
    )
}

/// A method OAuth tokens may never call.
pub(crate) fn oauth_forbidden() -> XrpcError {
    XrpcError::new(
        403,
        "Forbidden",
        "OAuth credentials are not supported for this endpoint",
    )
}

fn auth_missing() -> XrpcError {
    XrpcError::unauthorized("AuthMissing", "Authentication Required")
}

/// Session-token problems as the reference words them.
pub(crate) fn token_error(e: TokenError) -> XrpcError {
    match e {
        TokenError::Expired => XrpcError::declared("ExpiredToken", "Token has expired"),
        TokenError::Invalid(_) => invalid_token("Token could not be verified"),
        TokenError::Malformed => invalid_token("Malformed token"),
        TokenError::BadScope => invalid_token("Bad token scope"),
        TokenError::MissingTokenId => {
            XrpcError::unauthorized("MissingTokenId", "Unexpected missing refresh token id")
        }
    }
}

/// A revoked session: `ExpiredToken`, so clients try their refresh token, which fails the same
/// way, and then sign the user out.
pub(crate) fn revoked() -> XrpcError {
    XrpcError::declared("ExpiredToken", "Token has been revoked")
}

/// The permission a session caller needs for a method whose policy is `requirement`.
fn permission_for(requirement: AuthRequirement) -> Permission<'static> {
    match requirement {
        AuthRequirement::AccessFull => Permission::Full,
        AuthRequirement::AccessPrivileged => Permission::Privileged,
        _ => Permission::Session,
    }
}

impl Auth<'_> {
    /// Checks the credentials of a call to `nsid`, whose policy is `requirement`, given the
    /// request's `Authorization` header. Runs once, before the handler.
    pub fn authenticate(
        &self,
        requirement: AuthRequirement,
        authorization: Option<&str>,
        nsid: &str,
    ) -> Result<Caller, XrpcError> {
        self.authenticate_presented(requirement, &Presented::authorization(authorization), nsid)
    }

    /// [`Auth::authenticate`] with everything the request presents (a DPoP proof too).
    pub fn authenticate_presented(
        &self,
        requirement: AuthRequirement,
        presented: &Presented<'_>,
        nsid: &str,
    ) -> Result<Caller, XrpcError> {
        let caller = self.identify(requirement, presented, nsid)?;
        if caller != Caller::Anonymous && REFUSED_WHILE_DEACTIVATED.contains(&nsid) {
            let state = self.store.account_state()?;
            if state.status == AccountStatus::Deactivated {
                return Err(XrpcError::unauthorized(
                    "AccountDeactivated",
                    "Account is deactivated",
                ));
            }
        }
        Ok(caller)
    }

    /// [`Auth::authenticate`] for a call of `nsid`, with its requirement from the server's
    /// policy table and the credentials of an `Authorization` header.
    pub fn authenticate_method(
        &self,
        nsid: &str,
        authorization: Option<&str>,
    ) -> Result<Caller, XrpcError> {
        self.authenticate_call(nsid, &Presented::authorization(authorization))
    }

    /// Authenticates a call of `nsid` as the server's policy tables require: the method's
    /// requirement, and for an OAuth token the method's OAuth rule.
    pub fn authenticate_call(
        &self,
        nsid: &str,
        presented: &Presented<'_>,
    ) -> Result<Caller, XrpcError> {
        let caller =
            self.authenticate_presented(super::policy::requirement(nsid), presented, nsid)?;
        if let Caller::OAuth(o) = &caller {
            super::policy::check_oauth(nsid, o, self.config)?;
        }
        Ok(caller)
    }

    fn identify(
        &self,
        requirement: AuthRequirement,
        presented: &Presented<'_>,
        nsid: &str,
    ) -> Result<Caller, XrpcError> {
        use AuthRequirement as R;
        if requirement == R::None {
            // Credentials on a public method are ignored, as the reference does.
            return Ok(Caller::Anonymous);
        }
        let credentials = parse_authorization(presented.authorization)?;
        match (requirement, credentials) {
            (R::None, _) => Ok(Caller::Anonymous),
            (R::Optional, None) => Ok(Caller::Anonymous),
            (R::Admin, _) => {
                // No operator password is configured for this single-user server.
                Err(XrpcError::authentication_required(
                    "Authentication Required",
                ))
            }
            (R::Service, None) => Err(XrpcError::unauthorized("MissingJwt", "missing jwt")),
            (_, None) => Err(auth_missing()),
            (R::Refresh | R::Service, Some(Credentials::Dpop(_))) => Err(oauth_forbidden()),
            (_, Some(Credentials::Dpop(t))) => self.oauth_caller(t, presented),
            (R::Optional, Some(Credentials::Basic(_))) => Err(XrpcError::authentication_required(
                "Authentication Required",
            )),
            (_, Some(Credentials::Basic(_))) => Err(invalid_token("Unexpected authorization type")),
            (R::Refresh, Some(Credentials::Bearer(t))) => {
                self.refresh_caller(t, nsid == DELETE_SESSION)
            }
            (R::Service, Some(Credentials::Bearer(t))) => self.service_caller(t, nsid),
            (R::Optional | R::AccessOrService, Some(Credentials::Bearer(t))) => {
                // Session tokens are HS256 and service tokens are ES256K/ES256: the header's
                // alg picks the verifier, and each verifier insists on its own alg and key.
                if is_asymmetric(t) {
                    self.service_caller(t, nsid)
                } else {
                    self.access_caller(t, permission_for(requirement))
                }
            }
            (R::Access | R::AccessPrivileged | R::AccessFull, Some(Credentials::Bearer(t))) => {
                self.access_caller(t, permission_for(requirement))
            }
        }
    }

    /// An OAuth access token with its DPoP proof, in the reference's order: the proof (with
    /// the server's nonce and the token's hash), its one use, then the token, which must be
    /// current and bound to the proof's key. Every failure is a 401 a DPoP client acts on
    /// (retry with the nonce, or refresh).
    fn oauth_caller(&self, token: &str, presented: &Presented<'_>) -> Result<Caller, XrpcError> {
        use crate::oauth::{dpop, store};
        let Some(db) = self.oauth_db else {
            return Err(invalid_token("Unsupported authorization type: DPoP"));
        };
        let now_ms = self.clock.now_millis();
        let nonce_key = dpop::nonce_key(&self.config.jwt_secret);
        let htu = format!("{}{}", self.config.public_url(), presented.path);
        let dpop_failure = |e: dpop::DpopError| XrpcError::new(401, e.error(), e.description());
        let proof = dpop::check(
            &presented.dpop,
            &dpop::Expected {
                htm: presented.method,
                htu: &htu,
                access_token: Some(token),
                now_ms,
                nonce_key: &nonce_key,
                verified: self.proof_verified.unwrap_or(&|_| false),
                continuation: presented.continuation,
            },
        )
        .map_err(dpop_failure)?;
        let oauth = store::OAuthStore::new(db);
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        if !presented.continuation {
            oauth.spend_proof(&proof.jti, now).map_err(dpop_failure)?;
        }
        let invalid = |m: &str| XrpcError::new(401, "invalid_token", m);
        let session = oauth
            .session_by_access(&store::token_hash(token))?
            .ok_or_else(|| invalid("Invalid token"))?;
        if session.access_expires_ms <= now {
            return Err(invalid("Token expired"));
        }
        if session.dpop_jkt != proof.jkt {
            return Err(invalid("Invalid DPoP key binding"));
        }
        let scopes = Scopes::parse(&session.scope);
        if !scopes.atproto {
            return Err(invalid("The token lacks the atproto scope"));
        }
        Ok(Caller::OAuth(OAuthCaller {
            did: self.config.did.as_str().to_owned(),
            session_id: session.id,
            client_id: session.client_id,
            scopes,
        }))
    }

    fn access_caller(&self, token: &str, needed: Permission<'_>) -> Result<Caller, XrpcError> {
        let now = self.clock.now_secs();
        // A refresh token here fails the typ check: "Token could not be verified", as the
        // reference answers.
        let claims = self
            .session_keys()
            .verify_access(token, now)
            .map_err(token_error)?;
        if claims.did != self.config.did.as_str() {
            return Err(invalid_token("Malformed token"));
        }
        let caller = Caller::Access(AccessCaller {
            did: claims.did,
            scope: claims.scope,
            session_id: claims.session_id,
        });
        caller.require(needed)?;
        // Server-side check: a revoked session's access tokens die with it.
        let Caller::Access(session) = &caller else {
            return Err(invalid_token("Malformed token"));
        };
        if !self
            .store
            .session_exists(&session.session_id, self.clock.now_millis())?
        {
            return Err(revoked());
        }
        Ok(caller)
    }

    fn refresh_caller(&self, token: &str, allow_expired: bool) -> Result<Caller, XrpcError> {
        let now = self.clock.now_secs();
        let claims = self
            .session_keys()
            .verify_refresh(token, now, allow_expired)
            .map_err(token_error)?;
        if claims.did != self.config.did.as_str() {
            return Err(invalid_token("Malformed token"));
        }
        Ok(Caller::Refresh(RefreshCaller {
            did: claims.did,
            session_id: claims.session_id,
            token_id: claims.token_id,
            expired: claims.expired,
        }))
    }

    fn service_caller(&self, token: &str, nsid: &str) -> Result<Caller, XrpcError> {
        let service_did = self.config.service_did();
        let key = self.config.signing_key.public_key();
        let claims = service::verify(
            token,
            &ServiceExpectations {
                service_did: &service_did,
                account_did: self.config.did.as_str(),
                account_key: &key,
                nsid,
                now_secs: self.clock.now_secs(),
            },
        )?;
        Ok(Caller::Service(ServiceCaller {
            iss: claims.iss,
            did: claims.did,
            aud: claims.aud,
            lxm: claims.lxm,
            jti: claims.jti,
        }))
    }
}

/// Whether the (unverified) header names an asymmetric alg: routing only, never trust.
fn is_asymmetric(token: &str) -> bool {
    jwt::decode(token)
        .ok()
        .and_then(|t| t.alg().map(|a| a.starts_with("ES")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(scope: AccessScope) -> Caller {
        Caller::Access(AccessCaller {
            did: "did:web:localhost".into(),
            scope,
            session_id: "s".into(),
        })
    }

    #[test]
    fn permissions_fail_closed() {
        use Permission as P;
        let full = session(AccessScope::Full);
        let privileged = session(AccessScope::AppPassPrivileged);
        let app = session(AccessScope::AppPass);
        let service_for = |lxm: &str| {
            Caller::Service(ServiceCaller {
                iss: "did:web:localhost".into(),
                did: "did:web:localhost".into(),
                aud: "did:web:localhost".into(),
                lxm: Some(lxm.into()),
                jti: None,
            })
        };
        let service = service_for("com.atproto.repo.getRecord");
        let upload_service = service_for(UPLOAD_BLOB);
        let upload = P::BlobUpload { mime: "image/png" };
        let refresh = Caller::Refresh(RefreshCaller {
            did: "did:web:localhost".into(),
            session_id: "s".into(),
            token_id: "t".into(),
            expired: false,
        });
        let write = P::RepoWrite {
            collection: "app.bsky.feed.post",
            action: RepoAction::Create,
        };
        let chat_token = P::ServiceToken {
            lxm: Some("chat.bsky.convo.getLog"),
            aud: "did:web:api.bsky.chat",
        };
        let table: &[(&Caller, &[P], &[P])] = &[
            (
                &full,
                &[
                    P::Account,
                    P::Session,
                    P::Privileged,
                    P::Full,
                    write,
                    chat_token,
                ],
                &[P::Refresh],
            ),
            (
                &privileged,
                &[P::Session, P::Privileged, write, chat_token],
                &[P::Full, P::Refresh],
            ),
            (
                &app,
                &[P::Session, write, upload],
                &[P::Privileged, P::Full, P::Refresh, chat_token],
            ),
            (
                &service,
                &[P::Account],
                &[
                    P::Session,
                    P::Privileged,
                    P::Full,
                    write,
                    upload,
                    chat_token,
                ],
            ),
            (
                &upload_service,
                &[P::Account, upload],
                &[P::Session, P::Privileged, P::Full, write, chat_token],
            ),
            (
                &refresh,
                &[P::Refresh],
                &[P::Account, P::Session, P::Full, write],
            ),
            (
                &Caller::Anonymous,
                &[],
                &[P::Account, P::Session, P::Full, P::Refresh, write, upload],
            ),
        ];
        for (caller, allowed, refused) in table {
            for p in *allowed {
                assert!(caller.can(*p), "{caller:?} should hold {p:?}");
                assert!(caller.require(*p).is_ok());
            }
            for p in *refused {
                assert!(!caller.can(*p), "{caller:?} must not hold {p:?}");
                let e = caller.require(*p).unwrap_err();
                let expected = if **caller == Caller::Anonymous {
                    "AuthMissing"
                } else {
                    "InvalidToken"
                };
                assert_eq!(e.error, expected, "{caller:?} {p:?}");
            }
        }
    }
}
