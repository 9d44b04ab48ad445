//! Legacy session tokens, shaped like the reference PDS's (clients decode them and schedule
//! refreshes on `exp`): HS256 with the server's secret, `aud` the service DID, `sub` the
//! account DID. Access tokens: header `typ: at+jwt`, `scope` one of the access scopes, 2 hours.
//! Refresh tokens: `typ: refresh+jwt`, `scope: com.atproto.refresh`, a unique `jti`, 90 days.
//!
//! Both carry `sid` (the OpenID-registered "session id" claim): the server-side session they
//! belong to, so revoking a session ends its access tokens at once, not when they expire.

use serde_json::{json, Map, Value};

use super::jwt::{self, JwtError};

/// Lifetime of an access token (reference: `120mins`).
pub const ACCESS_TOKEN_TTL_SECS: u64 = 2 * 60 * 60;
/// Lifetime of a refresh token (reference: `90days`); each rotation starts a fresh one.
pub const REFRESH_TOKEN_TTL_SECS: u64 = 90 * 24 * 60 * 60;

/// `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// `typ` of refresh tokens (an atproto convention).
pub const REFRESH_TYP: &str = "refresh+jwt";
/// `scope` of refresh tokens.
pub const REFRESH_SCOPE: &str = "com.atproto.refresh";

/// What an access token may do: the legacy scopes of the reference PDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessScope {
    /// `com.atproto.access`: a session opened with the account password. Everything.
    Full,
    /// `com.atproto.appPassPrivileged`: a privileged app password (adds chat, DMs).
    AppPassPrivileged,
    /// `com.atproto.appPass`: an ordinary app password. No account, identity or app-password
    /// management, no privileged methods.
    AppPass,
}

impl AccessScope {
    /// The `scope` claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessScope::Full => "com.atproto.access",
            AccessScope::AppPassPrivileged => "com.atproto.appPassPrivileged",
            AccessScope::AppPass => "com.atproto.appPass",
        }
    }

    /// Parses a `scope` claim value.
    pub fn parse(s: &str) -> Option<AccessScope> {
        match s {
            "com.atproto.access" => Some(AccessScope::Full),
            "com.atproto.appPassPrivileged" => Some(AccessScope::AppPassPrivileged),
            "com.atproto.appPass" => Some(AccessScope::AppPass),
            _ => None,
        }
    }

    /// The scope of a session opened with an app password (`Some(privileged)`) or the
    /// account password (`None`).
    pub fn for_app_password(privileged: Option<bool>) -> AccessScope {
        match privileged {
            None => AccessScope::Full,
            Some(true) => AccessScope::AppPassPrivileged,
            Some(false) => AccessScope::AppPass,
        }
    }

    /// Whether this scope may call privileged methods (everything but plain app passwords).
    pub fn is_privileged(self) -> bool {
        self != AccessScope::AppPass
    }
}

/// The verified claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`: the account DID.
    pub did: String,
    pub scope: AccessScope,
    /// `sid`: the server-side session.
    pub session_id: String,
    pub iat: u64,
    pub exp: u64,
}

/// The verified claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    /// `sub`: the account DID.
    pub did: String,
    /// `sid`: the server-side session.
    pub session_id: String,
    /// `jti`: this token's unique id (stored hashed).
    pub token_id: String,
    pub exp: u64,
    /// True when accepted although expired (only deleteSession asks for that).
    pub expired: bool,
}

/// Why a session token was refused; the verifier maps these onto XRPC errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `exp` has passed (clients refresh on this).
    Expired,
    /// Signature, algorithm, type, audience or time claims do not check out.
    Invalid(JwtError),
    /// Verified, but a claim is missing or of the wrong shape.
    Malformed,
    /// Verified, but the `scope` is not one this kind of token may carry.
    BadScope,
    /// A refresh token without `jti`.
    MissingTokenId,
}

/// The signing keys and audience shared by minting and verification.
#[derive(Clone, Copy)]
pub struct SessionKeys<'a> {
    /// The HS256 secret.
    pub secret: &'a [u8],
    /// `aud` of every session token: this server's DID.
    pub service_did: &'a str,
}

impl SessionKeys<'_> {
    /// Mints an access token for `did` in session `session_id`.
    pub fn mint_access(
        &self,
        did: &str,
        scope: AccessScope,
        session_id: &str,
        now_secs: u64,
    ) -> String {
        let claims = json!({
            "scope": scope.as_str(),
            "aud": self.service_did,
            "sub": did,
            "sid": session_id,
            "iat": now_secs,
            "exp": now_secs + ACCESS_TOKEN_TTL_SECS,
        });
        jwt::sign_hs256(header(ACCESS_TYP), &object(claims), self.secret)
    }

    /// Mints a refresh token with id `token_id` for `did` in session `session_id`.
    pub fn mint_refresh(
        &self,
        did: &str,
        session_id: &str,
        token_id: &str,
        now_secs: u64,
    ) -> String {
        let claims = json!({
            "scope": REFRESH_SCOPE,
            "aud": self.service_did,
            "sub": did,
            "sid": session_id,
            "jti": token_id,
            "iat": now_secs,
            "exp": now_secs + REFRESH_TOKEN_TTL_SECS,
        });
        jwt::sign_hs256(header(REFRESH_TYP), &object(claims), self.secret)
    }

    /// The `jti` of the refresh token that succeeds the one with `jti`: derived, not random, so
    /// that a retried refresh within the grace window can be given the very same successor
    /// (the store keeps only a hash of each `jti`). Only the server can derive it.
    pub fn successor_jti(&self, jti: &str) -> String {
        use base64::Engine;
        let tag = jwt::hmac_sha256_tag(self.secret, format!("refresh-successor:{jti}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    }

    /// Verifies an access token: HS256, `typ` at+jwt, our audience, unexpired, an access scope.
    pub fn verify_access(&self, token: &str, now_secs: u64) -> Result<AccessClaims, TokenError> {
        let jwt = self.verify(token, ACCESS_TYP, now_secs, false)?.0;
        // Service-auth (`lxm`) and proof-of-possession (`cnf`) tokens never pass as sessions.
        if jwt.claims.contains_key("lxm") || jwt.claims.contains_key("cnf") {
            return Err(TokenError::Malformed);
        }
        let (did, session_id) = subject_and_session(&jwt)?;
        let scope = jwt
            .str_claim("scope")
            .and_then(AccessScope::parse)
            .ok_or(TokenError::BadScope)?;
        Ok(AccessClaims {
            did,
            scope,
            session_id,
            iat: jwt::int_claim(&jwt.claims, "iat").flatten().unwrap_or(0),
            exp: jwt::int_claim(&jwt.claims, "exp").flatten().unwrap_or(0),
        })
    }

    /// Verifies a refresh token. With `allow_expired`, an expired but otherwise valid token
    /// passes (flagged `expired`): logging out must work with a stale token.
    pub fn verify_refresh(
        &self,
        token: &str,
        now_secs: u64,
        allow_expired: bool,
    ) -> Result<RefreshClaims, TokenError> {
        let (jwt, expired) = self.verify(token, REFRESH_TYP, now_secs, allow_expired)?;
        if jwt.str_claim("scope") != Some(REFRESH_SCOPE) {
            return Err(TokenError::BadScope);
        }
        let (did, session_id) = subject_and_session(&jwt)?;
        let token_id = match jwt.claims.get("jti") {
            None => return Err(TokenError::MissingTokenId),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(TokenError::Malformed),
        };
        Ok(RefreshClaims {
            did,
            session_id,
            token_id,
            exp: jwt::int_claim(&jwt.claims, "exp").flatten().unwrap_or(0),
            expired,
        })
    }

    fn verify(
        &self,
        token: &str,
        typ: &str,
        now_secs: u64,
        allow_expired: bool,
    ) -> Result<(jwt::Jwt, bool), TokenError> {
        let unverified = jwt::decode(token).map_err(TokenError::Invalid)?;
        // Checked before the signature so a token of the other kind (or a service JWT) is
        // refused for what it is; it grants nothing either way.
        if unverified.typ() != Some(typ) {
            return Err(TokenError::Invalid(JwtError::Malformed("unexpected typ")));
        }
        let jwt = unverified
            .verify_hs256(self.secret)
            .map_err(TokenError::Invalid)?;
        if jwt.str_claim("aud") != Some(self.service_did) {
            return Err(TokenError::Invalid(JwtError::Malformed("wrong audience")));
        }
        match jwt.check_times(now_secs) {
            Ok(()) => Ok((jwt, false)),
            Err(JwtError::Expired) if allow_expired => Ok((jwt, true)),
            Err(JwtError::Expired) => Err(TokenError::Expired),
            Err(e) => Err(TokenError::Invalid(e)),
        }
    }
}

fn subject_and_session(jwt: &jwt::Jwt) -> Result<(String, String), TokenError> {
    let did = jwt.str_claim("sub").filter(|s| s.starts_with("did:"));
    let sid = jwt.str_claim("sid").filter(|s| is_session_id(s));
    match (did, sid) {
        (Some(d), Some(s)) => Ok((d.to_owned(), s.to_owned())),
        _ => Err(TokenError::Malformed),
    }
}

/// Session ids are 32 lowercase hex digits (16 random bytes); storage keys rely on it.
pub fn is_session_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn header(typ: &str) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("typ".into(), Value::from(typ));
    h
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
