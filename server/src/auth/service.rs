//! Service-auth JWTs (atproto "inter-service authentication"): short-lived ES256K tokens signed
//! with the account's key, `iss` the account DID, `aud` the receiving service, `lxm` the one
//! method they allow. We mint them for the account (getServiceAuth) and accept them back when a
//! service the account handed one to calls us (e.g. the video service uploading a blob).
//!
//! Inbound rules (reference `verifyJwt` + the PDS's verifier; error names as it sends them):
//! typ must not be a session/DPoP type; `exp` required and unexpired, and at most
//! [`MAX_SERVICE_TOKEN_TTL_SECS`] ahead (we never mint longer); `aud` our service DID; `lxm`
//! required and equal to the called method (the reference PDS requires it too); `iss` the
//! account DID, optionally `did#fragment` (not `#atproto_labeler`: we hold no labeler key);
//! the signature by the account's key with its own alg. `jti` is not tracked: tokens are
//! bound to one method, one audience and at most an hour.

use serde_json::{json, Map, Value};

use pds_api::runtime::xrpc::XrpcError;

use super::jwt::{self, JwtError, CLOCK_SKEW_SECS};
use crate::crypto::{PublicKey, SigningKey};

/// Default lifetime of a minted token (reference: 60 s).
pub const DEFAULT_SERVICE_TOKEN_TTL_SECS: u64 = 60;
/// Longest lifetime a caller may request, and the farthest `exp` we accept inbound.
pub const MAX_SERVICE_TOKEN_TTL_SECS: u64 = 60 * 60;
/// Longest lifetime of a token bound to no method.
pub const MAX_METHODLESS_TOKEN_TTL_SECS: u64 = 60;

/// Claims of a service token to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTokenRequest<'a> {
    /// `iss`: the account DID.
    pub iss: &'a str,
    /// `aud`: the service DID (optionally `#service-id`).
    pub aud: &'a str,
    /// `lxm`: the one method the token allows.
    pub lxm: Option<&'a str>,
    pub iat: u64,
    pub exp: u64,
    /// `jti`: a unique id (16 random bytes, hex).
    pub jti: &'a str,
}

/// Signs a service token with `key` (`typ: JWT`, alg from the key's curve).
pub fn mint(req: &ServiceTokenRequest<'_>, key: &SigningKey) -> String {
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(req.iat));
    claims.insert("iss".into(), json!(req.iss));
    claims.insert("aud".into(), json!(req.aud));
    claims.insert("exp".into(), json!(req.exp));
    if let Some(lxm) = req.lxm {
        claims.insert("lxm".into(), json!(lxm));
    }
    claims.insert("jti".into(), json!(req.jti));
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("JWT"));
    jwt::sign_es(header, &claims, key)
}

/// A verified inbound service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClaims {
    /// `iss` as sent (the account DID, maybe with a `#fragment`).
    pub iss: String,
    /// The issuer's DID (the part of `iss` before `#`).
    pub did: String,
    pub aud: String,
    pub lxm: Option<String>,
    pub jti: Option<String>,
    pub exp: u64,
}

/// What an inbound token must match.
#[derive(Debug, Clone, Copy)]
pub struct ServiceExpectations<'a> {
    /// Our service DID (`aud`).
    pub service_did: &'a str,
    /// The only DID whose tokens we accept: the account.
    pub account_did: &'a str,
    /// The account's current signing key.
    pub account_key: &'a PublicKey,
    /// The NSID being called (`lxm` must equal it).
    pub nsid: &'a str,
    pub now_secs: u64,
}

fn reject(error: &str, message: impl Into<String>) -> XrpcError {
    XrpcError::unauthorized(error, message)
}

/// Verifies an inbound service token; errors are the reference's 401s.
pub fn verify(token: &str, want: &ServiceExpectations<'_>) -> Result<ServiceClaims, XrpcError> {
    let poorly = || reject("BadJwt", "poorly formatted jwt");
    let unverified = jwt::decode(token).map_err(|_| poorly())?;
    if unverified.alg().is_none() {
        return Err(poorly());
    }
    if let Some(typ @ ("at+jwt" | "refresh+jwt" | "dpop+jwt")) = unverified.typ() {
        return Err(reject("BadJwtType", format!("Invalid jwt type \"{typ}\"")));
    }
    let claims = &unverified.claims;
    let str_of = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(iss), Some(aud)) = (str_of("iss"), str_of("aud")) else {
        return Err(poorly());
    };
    let Some(Some(exp)) = jwt::int_claim(claims, "exp") else {
        return Err(poorly());
    };
    let lxm = match claims.get("lxm") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(poorly()),
    };
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(poorly()),
    };

    if want.now_secs >= exp {
        return Err(reject("JwtExpired", "jwt expired"));
    }
    if exp > want.now_secs + MAX_SERVICE_TOKEN_TTL_SECS + CLOCK_SKEW_SECS {
        return Err(reject("BadJwt", "jwt expires too far in the future"));
    }
    if aud != want.service_did {
        return Err(reject(
            "BadJwtAudience",
            "jwt audience does not match service did",
        ));
    }
    match lxm.as_deref() {
        Some(m) if m == want.nsid => {}
        Some(_) => {
            return Err(reject(
                "BadJwtLexiconMethod",
                format!(
                    "bad jwt lexicon method (\"lxm\"). must match: {}",
                    want.nsid
                ),
            ))
        }
        None => {
            return Err(reject(
                "BadJwtLexiconMethod",
                format!(
                    "missing jwt lexicon method (\"lxm\"). must match: {}",
                    want.nsid
                ),
            ))
        }
    }
    let did = issuer_did(&iss).ok_or_else(|| reject("BadJwtIss", "jwt iss is not a valid did"))?;
    if did != want.account_did || iss.ends_with("#atproto_labeler") {
        return Err(reject("UntrustedIss", "Untrusted issuer"));
    }
    let verified = unverified
        .verify_es(want.account_key)
        .map_err(|e| match e {
            JwtError::AlgMismatch { .. } => {
                reject("BadJwtSignature", "could not verify jwt signature")
            }
            _ => reject("BadJwtSignature", "jwt signature does not match jwt issuer"),
        })?;
    // iat / nbf in the future (exp was checked above).
    verified.check_times(want.now_secs).map_err(|_| poorly())?;
    Ok(ServiceClaims {
        did: did.to_owned(),
        iss,
        aud,
        lxm,
        jti,
        exp,
    })
}

/// The DID of an `iss` (`did` or `did#fragment`), if well formed.
fn issuer_did(iss: &str) -> Option<&str> {
    let did = match iss.split_once('#') {
        None => iss,
        Some((did, fragment)) if !fragment.is_empty() && !fragment.contains('#') => did,
        Some(_) => return None,
    };
    pds_api::runtime::syntax::Did::new(did).ok().map(|_| did)
}

/// Whether `aud` is a DID we may mint for: `did:plc` / `did:web`, optionally `#service-id`.
pub fn is_valid_audience(aud: &str) -> bool {
    let Some(did) = issuer_did(aud) else {
        return false;
    };
    did.starts_with("did:plc:") || did.starts_with("did:web:")
}
