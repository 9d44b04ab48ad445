//! DPoP (RFC 9449): proof checks, JWK thumbprints and the server's nonces.
//!
//! Nonces are stateless: `base64url(HMAC-SHA256(key, counter))` with the counter the minute
//! since the epoch. The server hands out the next minute's nonce and accepts the previous, the
//! current and the next one (at most 180 s, under the spec's 5 minutes), so every isolate and
//! both shells agree without storage. The key is derived from the JWT secret.
//!
//! A proof is checked here for its form, signature, method, URL, age, nonce and access-token
//! hash; its `jti` replay check needs storage and is the caller's ([`super::store`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::jwt;
use crate::crypto::{KeyAlgorithm, PublicKey};
use crate::http::{HttpRequest, HttpResponse};

/// How long one nonce is current.
pub const NONCE_ROTATION_MS: u64 = 60_000;
/// A proof's `iat` may lie this far in the past (the reference's 10 s age plus 180 s of clock
/// tolerance) ...
const PROOF_PAST_SECS: u64 = 190;
/// ... and this far in the future.
const PROOF_FUTURE_SECS: u64 = 180;
/// How long a proof's `jti` is remembered: longer than any proof stays acceptable.
pub const JTI_RETENTION_MS: u64 = (PROOF_PAST_SECS + PROOF_FUTURE_SECS + 10) * 1000;
/// The response header carrying the nonce.
pub const NONCE_HEADER: &str = "dpop-nonce";

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// No nonce, or a stale one: the client retries with the nonce the response carries.
    UseNonce(&'static str),
    /// Anything else wrong with the proof.
    Invalid(String),
}

impl DpopError {
    /// The OAuth error name.
    pub fn error(&self) -> &'static str {
        match self {
            DpopError::UseNonce(_) => "use_dpop_nonce",
            DpopError::Invalid(_) => "invalid_dpop_proof",
        }
    }

    /// The human-readable description.
    pub fn description(&self) -> String {
        match self {
            DpopError::UseNonce(m) => (*m).to_owned(),
            DpopError::Invalid(m) => m.clone(),
        }
    }
}

/// The nonce key of a deployment: derived from its JWT secret, so every isolate agrees.
pub fn nonce_key(jwt_secret: &[u8]) -> [u8; 32] {
    jwt::hmac_sha256_tag(jwt_secret, b"dpop-nonce")
}

fn nonce_at(key: &[u8; 32], counter: u64) -> String {
    URL_SAFE_NO_PAD.encode(jwt::hmac_sha256_tag(key, &counter.to_be_bytes()))
}

/// The nonce to hand out at `now_ms`: the next period's, so it stays valid longest.
pub fn current_nonce(key: &[u8; 32], now_ms: u64) -> String {
    nonce_at(key, now_ms / NONCE_ROTATION_MS + 1)
}

/// Whether `nonce` is the previous, current or next period's.
fn nonce_accepted(key: &[u8; 32], nonce: &str, now_ms: u64) -> bool {
    let counter = now_ms / NONCE_ROTATION_MS;
    [counter.saturating_sub(1), counter, counter + 1]
        .iter()
        .any(|c| jwt::constant_time_eq(nonce_at(key, *c).as_bytes(), nonce.as_bytes()))
}

/// The public key of a JWK and its RFC 7638 SHA-256 thumbprint. Only EC keys on P-256
/// (`ES256`) and secp256k1 (`ES256K`) are taken; a key with private parts (`d`) is refused.
pub fn jwk_key(jwk: &Map<String, Value>) -> Result<(PublicKey, String), String> {
    if jwk.contains_key("d") {
        return Err("DPoP key must be a public key".into());
    }
    let field = |name: &str| -> Result<&str, String> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("JWK is missing \"{name}\""))
    };
    if field("kty")? != "EC" {
        return Err("Unsupported JWK key type".into());
    }
    let crv = field("crv")?;
    let alg = match crv {
        "P-256" => KeyAlgorithm::P256,
        "secp256k1" => KeyAlgorithm::K256,
        _ => return Err("Unsupported JWK curve".into()),
    };
    let (x, y) = (field("x")?, field("y")?);
    let coordinate = |c: &str| {
        URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| "Invalid JWK coordinates".to_owned())
    };
    let mut sec1 = vec![4u8];
    sec1.extend(coordinate(x)?);
    sec1.extend(coordinate(y)?);
    let key = PublicKey::from_sec1(alg, &sec1).map_err(|_| "Invalid JWK".to_owned())?;
    // RFC 7638: the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
    Ok((key, URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))))
}

/// The public JWK of a key (tests and the command line sign proofs with it).
pub fn public_jwk(key: &PublicKey) -> Value {
    let point = key.to_sec1_uncompressed();
    let crv = match key.algorithm() {
        KeyAlgorithm::P256 => "P-256",
        KeyAlgorithm::K256 => "secp256k1",
    };
    crate::data::json::JsonWriter::new()
        .str("kty", "EC")
        .str("crv", crv)
        .str("x", &URL_SAFE_NO_PAD.encode(&point[1..33]))
        .str("y", &URL_SAFE_NO_PAD.encode(&point[33..65]))
        .finish()
}

/// `base64url(SHA-256(access_token))`: a proof's `ath`.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// What a proof must match.
pub struct Expected<'a> {
    /// The request's method.
    pub htm: &'a str,
    /// The request's URL on the public origin, without query: what `htu` must name.
    pub htu: &'a str,
    /// The access token the request presents, if any (`ath` must be its hash).
    pub access_token: Option<&'a str>,
    pub now_ms: u64,
    pub nonce_key: &'a [u8; 32],
    /// Whether a proof's signature is already known to be good (checked by the platform's
    /// faster verifier); otherwise it is verified here.
    pub verified: &'a dyn Fn(&str) -> bool,
    /// A later step of a request whose proof was checked when it began: its age and nonce are
    /// not checked again (an import may outlast both).
    pub continuation: bool,
}

/// The signed input, key and signature of a proof, without any check: for a platform to verify
/// the signature ahead of [`check`].
pub fn signed_parts(proof: &str) -> Option<(String, PublicKey, Vec<u8>)> {
    let token = jwt::decode(proof).ok()?;
    if token.alg() != Some("ES256") {
        return None;
    }
    let jwk = token.header.get("jwk")?.as_object()?;
    let (key, _) = jwk_key(jwk).ok()?;
    let (input, sig) = token.signed_parts();
    Some((input.to_owned(), key, sig.to_vec()))
}

/// A proof that passed every check but the `jti` replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The thumbprint of the proof's key.
    pub jkt: String,
    /// The proof's unique id.
    pub jti: String,
}

/// The request's `DPoP` header values (any number, for the checks to refuse all but one).
pub fn proof_headers(req: &HttpRequest) -> Vec<&str> {
    req.headers
        .iter()
        .filter(|(k, _)| k == "dpop")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Checks the proofs a request carries, in RFC 9449 §4.3's order.
pub fn check(proofs: &[&str], want: &Expected<'_>) -> Result<Proof, DpopError> {
    let invalid = |m: &str| DpopError::Invalid(m.to_owned());
    let proof = match proofs {
        [] => return Err(invalid("DPoP proof required")),
        [""] => return Err(invalid("DPoP header cannot be empty")),
        [one] => *one,
        _ => return Err(invalid("DPoP header must contain a single proof")),
    };
    let token = jwt::decode(proof).map_err(|_| invalid("Invalid DPoP proof"))?;
    if token.typ() != Some("dpop+jwt") {
        return Err(invalid("Invalid DPoP proof type"));
    }
    let jwk = token
        .header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("DPoP proof has no jwk"))?;
    let (key, jkt) = jwk_key(jwk).map_err(DpopError::Invalid)?;
    let verified = if key.algorithm() == KeyAlgorithm::P256 && (want.verified)(proof) {
        token.trust_verified(&key)
    } else {
        token.verify_jose(&key)
    }
    .map_err(|_| invalid("Invalid DPoP proof signature"))?;
    let claims = &verified.claims;
    let now_secs = want.now_ms / 1000;
    let iat = match jwt::int_claim(claims, "iat") {
        Some(Some(iat)) => iat,
        _ => return Err(invalid("DPoP proof has no valid iat")),
    };
    let stale = iat.saturating_add(PROOF_PAST_SECS) < now_secs;
    if (stale && !want.continuation) || iat > now_secs.saturating_add(PROOF_FUTURE_SECS) {
        return Err(invalid("DPoP proof is too old or from the future"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid("DPoP proof has no jti"))?;
    if claims.get("htm").and_then(Value::as_str) != Some(want.htm) {
        return Err(invalid("DPoP htm mismatch"));
    }
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("DPoP proof has no htu"))?;
    if !same_url(htu, want.htu) {
        return Err(invalid("DPoP htu mismatch"));
    }
    match claims.get("nonce").and_then(Value::as_str) {
        _ if want.continuation => {}
        None => {
            return Err(DpopError::UseNonce(
                "Authorization server requires nonce in DPoP proof",
            ))
        }
        Some(n) if !nonce_accepted(want.nonce_key, n, want.now_ms) => {
            return Err(DpopError::UseNonce("DPoP nonce mismatch"))
        }
        Some(_) => {}
    }
    let ath = claims.get("ath").and_then(Value::as_str);
    match (want.access_token, ath) {
        (None, Some(_)) => return Err(invalid("DPoP ath claim not allowed")),
        (Some(_), None) => return Err(invalid("DPoP ath claim required")),
        (Some(token), Some(ath)) => {
            let expected = access_token_hash(token);
            if !jwt::constant_time_eq(expected.as_bytes(), ath.as_bytes()) {
                return Err(invalid("DPoP ath mismatch"));
            }
        }
        (None, None) => {}
    }
    Ok(Proof {
        jkt,
        jti: jti.to_owned(),
    })
}

/// Whether a proof's `htu` names `expected` (an origin and path): query and fragment are
/// ignored, scheme and host compare without case, a default port is the same as none.
/// Credentials in the URL never match.
fn same_url(htu: &str, expected: &str) -> bool {
    fn normalize(url: &str) -> Option<String> {
        let url = url.split(['#', '?']).next()?;
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || authority.is_empty() {
            return None;
        }
        let authority = authority.to_ascii_lowercase();
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
        Some(format!("{scheme}://{authority}{path}"))
    }
    matches!((normalize(htu), normalize(expected)), (Some(a), Some(b)) if a == b)
}

/// Whether a request carried DPoP: a proof, or a token with the `DPoP` scheme.
pub fn carries_dpop(req: &HttpRequest) -> bool {
    let dpop_scheme = req
        .header("authorization")
        .is_some_and(|a| a.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("dpop ")));
    req.header("dpop").is_some() || dpop_scheme
}

/// Adds what answers to a request that carried DPoP ([`carries_dpop`]) always carry: the current nonce and,
/// on an authentication or scope failure, the `WWW-Authenticate` challenge a DPoP client acts
/// on (RFC 9449 §7.1, RFC 6750 §3.1).
pub fn stamp(res: &mut HttpResponse, nonce_key: &[u8; 32], now_ms: u64) {
    res.headers.retain(|(k, _)| k != NONCE_HEADER);
    res.headers
        .push((NONCE_HEADER.into(), current_nonce(nonce_key, now_ms)));
    if !matches!(res.status, 401 | 403) || res.headers.iter().any(|(k, _)| k == "www-authenticate")
    {
        return;
    }
    let crate::http::Body::Bytes(body) = &res.body else {
        return;
    };
    let Ok(error) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let name = error.get("error").and_then(Value::as_str).unwrap_or("");
    let message = error
        .get("message")
        .or_else(|| error.get("error_description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .replace(['"', '\\'], "'");
    let challenge = match (res.status, name) {
        (401, "use_dpop_nonce" | "invalid_dpop_proof" | "invalid_token") => {
            format!("DPoP error=\"{name}\", error_description=\"{message}\", algs=\"ES256 ES256K\"")
        }
        // Other 401s on a DPoP request: the token did not authenticate.
        (401, _) => format!("DPoP error=\"invalid_token\", error_description=\"{message}\""),
        (403, "InsufficientScope") => {
            // The message names the scope: `Missing required scope 'repo:…'` once quoted.
            let scope = message.split('\'').nth(1).unwrap_or("");
            format!(
                "DPoP error=\"insufficient_scope\", scope=\"{scope}\", error_description=\"{message}\""
            )
        }
        _ => return,
    };
    res.headers.push(("www-authenticate".into(), challenge));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::SigningKey;

    /// A signed proof with `claims`, by `key` (with its JWK in the header).
    pub(crate) fn proof(key: &SigningKey, claims: Value) -> String {
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert("jwk".into(), public_jwk(&key.public_key()));
        jwt::sign_es(header, claims.as_object().unwrap(), key)
    }

    fn key() -> SigningKey {
        SigningKey::generate(KeyAlgorithm::P256)
    }

    const NOW_MS: u64 = 1_800_000_000_000;
    const URL: &str = "https://pds.example.com/xrpc/com.atproto.repo.createRecord";

    fn expected<'a>(nonce_key: &'a [u8; 32], token: Option<&'a str>) -> Expected<'a> {
        Expected {
            htm: "POST",
            htu: URL,
            access_token: token,
            now_ms: NOW_MS,
            nonce_key,
            verified: &|_| false,
            continuation: false,
        }
    }

    #[test]
    fn a_good_proof_passes_and_each_defect_is_named() {
        let nk = nonce_key(b"secret");
        let k = key();
        let nonce = current_nonce(&nk, NOW_MS);
        let good = serde_json::json!({
            "jti": "j1", "htm": "POST", "htu": format!("{URL}?x=1"), "iat": NOW_MS / 1000,
            "nonce": nonce, "ath": access_token_hash("tok"),
        });
        let p = check(&[&proof(&k, good.clone())], &expected(&nk, Some("tok"))).unwrap();
        let (_, jkt) = jwk_key(public_jwk(&k.public_key()).as_object().unwrap()).unwrap();
        assert_eq!(p.jkt, jkt);
        assert_eq!(p.jti, "j1");

        let with = |field: &str, value: Value| {
            let mut c = good.clone();
            if value.is_null() {
                c.as_object_mut().unwrap().remove(field);
            } else {
                c[field] = value;
            }
            proof(&k, c)
        };
        let cases: Vec<(String, DpopError)> = vec![
            (
                with("nonce", Value::Null),
                DpopError::UseNonce("Authorization server requires nonce in DPoP proof"),
            ),
            (
                with("nonce", "stale".into()),
                DpopError::UseNonce("DPoP nonce mismatch"),
            ),
            (
                with("htm", "GET".into()),
                DpopError::Invalid("DPoP htm mismatch".into()),
            ),
            (
                with(
                    "htu",
                    "https://evil.example.com/xrpc/com.atproto.repo.createRecord".into(),
                ),
                DpopError::Invalid("DPoP htu mismatch".into()),
            ),
            (
                with("iat", (NOW_MS / 1000 - 600).into()),
                DpopError::Invalid("DPoP proof is too old or from the future".into()),
            ),
            (
                with("ath", access_token_hash("other").into()),
                DpopError::Invalid("DPoP ath mismatch".into()),
            ),
            (
                with("jti", Value::Null),
                DpopError::Invalid("DPoP proof has no jti".into()),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(check(&[&p], &expected(&nk, Some("tok"))), Err(want));
        }
        // A proof with ath where no token is presented, and one signed by another key.
        assert!(matches!(
            check(&[&proof(&k, good.clone())], &expected(&nk, None)),
            Err(DpopError::Invalid(_))
        ));
        let forged = {
            let p = proof(&k, good.clone());
            let other = proof(&key(), good.clone());
            let sig = other.rsplit('.').next().unwrap().to_owned();
            format!("{}.{sig}", &p[..p.rfind('.').unwrap()])
        };
        assert_eq!(
            check(&[&forged], &expected(&nk, Some("tok"))),
            Err(DpopError::Invalid("Invalid DPoP proof signature".into()))
        );
        let p = proof(&k, good);
        assert!(check(&[&p, &p], &expected(&nk, Some("tok"))).is_err());
        assert!(check(&[], &expected(&nk, Some("tok"))).is_err());
    }

    #[test]
    fn nonces_rotate_and_the_neighbours_are_accepted() {
        let nk = nonce_key(b"secret");
        let handed = current_nonce(&nk, NOW_MS);
        assert!(nonce_accepted(&nk, &handed, NOW_MS));
        assert!(nonce_accepted(&nk, &handed, NOW_MS + 2 * NONCE_ROTATION_MS));
        assert!(!nonce_accepted(
            &nk,
            &handed,
            NOW_MS + 3 * NONCE_ROTATION_MS
        ));
        assert!(!nonce_accepted(&nonce_key(b"other"), &handed, NOW_MS));
    }

    #[test]
    fn urls_compare_by_origin_and_path() {
        assert!(same_url(
            "HTTPS://PDS.example.com:443/a?b#c",
            "https://pds.example.com/a"
        ));
        assert!(!same_url(
            "https://u:p@pds.example.com/a",
            "https://pds.example.com/a"
        ));
        assert!(!same_url(
            "https://pds.example.com/a/",
            "https://pds.example.com/a"
        ));
        assert!(!same_url(
            "ftp://pds.example.com/a",
            "ftp://pds.example.com/a"
        ));
    }
}
