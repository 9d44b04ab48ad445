//! The one auth check, run before a handler from the method's declared
//! [`AuthRequirement`]: who is calling, with what power, or the exact error the reference PDS
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

use pds_api::runtime::xrpc::{AuthRequirement, MethodMeta, Request, XrpcError};

use super::jwt;
use super::service::{self, ServiceExpectations};
use super::store::AccountStatus;
use super::tokens::{AccessScope, TokenError};
use super::Auth;

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

pub(crate) fn store_error(e: super::store::StoreError) -> XrpcError {
    XrpcError::internal_message(e.to_string())
}

/// Which access scopes each requirement admits.
fn scopes_for(requirement: AuthRequirement) -> &'static [AccessScope] {
    use AccessScope::*;
    match requirement {
        AuthRequirement::AccessFull => &[Full],
        AuthRequirement::AccessPrivileged => &[Full, AppPassPrivileged],
        _ => &[Full, AppPassPrivileged, AppPass],
    }
}

impl Auth<'_> {
    /// Checks the credentials of a call to `nsid`, which declares `requirement`, given the
    /// request's `Authorization` header. Runs once, before the handler.
    pub fn authenticate(
        &self,
        requirement: AuthRequirement,
        authorization: Option<&str>,
        nsid: &str,
    ) -> Result<Caller, XrpcError> {
        let caller = self.identify(requirement, authorization, nsid)?;
        if caller != Caller::Anonymous && REFUSED_WHILE_DEACTIVATED.contains(&nsid) {
            let state = self.store.account_state().map_err(store_error)?;
            if state.status == AccountStatus::Deactivated {
                return Err(XrpcError::unauthorized(
                    "AccountDeactivated",
                    "Account is deactivated",
                ));
            }
        }
        Ok(caller)
    }

    /// [`Auth::authenticate`] for a request the dispatcher has looked up: the requirement and
    /// NSID from the policy and the metadata, the credentials from the `Authorization` header.
    pub fn authenticate_request(
        &self,
        meta: &MethodMeta,
        req: &Request,
    ) -> Result<Caller, XrpcError> {
        let requirement = super::policy::requirement(meta.nsid);
        self.authenticate(requirement, req.header("authorization"), meta.nsid)
    }

    fn identify(
        &self,
        requirement: AuthRequirement,
        authorization: Option<&str>,
        nsid: &str,
    ) -> Result<Caller, XrpcError> {
        use AuthRequirement as R;
        if requirement == R::None {
            // Credentials on a public method are ignored, as the reference does.
            return Ok(Caller::Anonymous);
        }
        let credentials = parse_authorization(authorization)?;
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
            (_, Some(Credentials::Dpop(_))) => {
                Err(invalid_token("Unsupported authorization type: DPoP"))
            }
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
                    self.access_caller(t, scopes_for(requirement))
                }
            }
            (R::Access | R::AccessPrivileged | R::AccessFull, Some(Credentials::Bearer(t))) => {
                self.access_caller(t, scopes_for(requirement))
            }
        }
    }

    fn access_caller(&self, token: &str, allowed: &[AccessScope]) -> Result<Caller, XrpcError> {
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
        if !allowed.contains(&claims.scope) {
            return Err(invalid_token("Bad token scope"));
        }
        // Server-side check: a revoked session's access tokens die with it.
        if !self
            .store
            .session_exists(&claims.session_id, self.clock.now_millis())
            .map_err(store_error)?
        {
            return Err(revoked());
        }
        Ok(Caller::Access(AccessCaller {
            did: claims.did,
            scope: claims.scope,
            session_id: claims.session_id,
        }))
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
