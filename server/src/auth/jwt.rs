//! Compact JWS (RFC 7515) / JWT (RFC 7519), as strict as atproto needs: three base64url
//! segments without padding, JSON objects without duplicate keys, a bounded size, and an `alg`
//! fixed by the verifier (never chosen by the token: no `none`, no HMAC-with-a-public-key).
//!
//! Two families: HS256 (session tokens, keyed by the server's secret) and ES256K / ES256
//! (service-auth tokens, signed with an account key through [`crate::crypto`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

use crate::crypto::{PublicKey, SigningKey};

/// Longest token accepted, in bytes. Ours are a few hundred; the bound keeps hostile headers
/// from costing more than a small allocation.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// How far in the future `iat` / `nbf` may lie: tolerates a slightly fast issuer clock.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// The signature algorithms this server produces and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC-SHA256 with the server's session secret.
    Hs256,
    /// ECDSA secp256k1 + SHA-256, compact low-S signature.
    Es256k,
    /// ECDSA P-256 + SHA-256, compact low-S signature.
    Es256,
}

impl Alg {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Es256k => "ES256K",
            Alg::Es256 => "ES256",
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// Not three base64url segments of JSON objects (the reason says which part).
    Malformed(&'static str),
    /// The header's `alg` is not the one the verifier expects.
    AlgMismatch {
        /// What the verifier requires.
        expected: &'static str,
        /// What the header says (empty when absent).
        found: String,
    },
    /// The header carries `crit` extensions, none of which this server understands.
    UnsupportedCritical,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is absent or not a non-negative integer.
    MissingExpiry,
    /// `exp` has passed.
    Expired,
    /// `nbf` lies in the future.
    NotYetValid,
    /// `iat` lies in the future.
    IssuedInFuture,
    /// A time claim (`iat`, `nbf`) is not a non-negative integer.
    BadTimeClaim(&'static str),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::TooLong => write!(f, "token longer than {MAX_TOKEN_LEN} bytes"),
            JwtError::Malformed(why) => write!(f, "malformed token: {why}"),
            JwtError::AlgMismatch { expected, found } => {
                write!(f, "token alg {found:?} where {expected} is required")
            }
            JwtError::UnsupportedCritical => f.write_str("token has unsupported crit header"),
            JwtError::BadSignature => f.write_str("token signature does not verify"),
            JwtError::MissingExpiry => f.write_str("token has no integer exp"),
            JwtError::Expired => f.write_str("token has expired"),
            JwtError::NotYetValid => f.write_str("token is not yet valid"),
            JwtError::IssuedInFuture => f.write_str("token was issued in the future"),
            JwtError::BadTimeClaim(name) => write!(f, "token claim {name} is not an integer"),
        }
    }
}

impl std::error::Error for JwtError {}

/// A token split and decoded, its signature not yet checked. Read nothing from it that
/// grants anything before calling one of the `verify_*` methods.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// A token whose signature verified with the expected algorithm and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
}

/// Splits and decodes a compact token without verifying it.
pub fn decode(token: &str) -> Result<UnverifiedJwt<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three dot-separated segments"));
    };
    let header = decode_object(h, "header")?;
    let claims = decode_object(c, "claims")?;
    let signature = b64_decode(s).ok_or(JwtError::Malformed("signature is not base64url"))?;
    if header.contains_key("crit") {
        return Err(JwtError::UnsupportedCritical);
    }
    Ok(UnverifiedJwt {
        header,
        claims,
        // The signed bytes are exactly the first two segments as sent.
        signing_input: &token[..h.len() + 1 + c.len()],
        signature,
    })
}

impl UnverifiedJwt<'_> {
    /// The header's `alg`, if it is a string.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// The header's `typ`, if it is a string.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    fn require_alg(&self, expected: Alg) -> Result<(), JwtError> {
        match self.alg() {
            Some(a) if a == expected.name() => Ok(()),
            other => Err(JwtError::AlgMismatch {
                expected: expected.name(),
                found: other.unwrap_or_default().to_owned(),
            }),
        }
    }

    /// Verifies an HS256 token with `secret`. The header must say HS256.
    pub fn verify_hs256(self, secret: &[u8]) -> Result<Jwt, JwtError> {
        self.require_alg(Alg::Hs256)?;
        let mut mac = hmac_sha256(secret);
        mac.update(self.signing_input.as_bytes());
        let tag = mac.finalize().into_bytes();
        if !constant_time_eq(&tag, &self.signature) {
            return Err(JwtError::BadSignature);
        }
        Ok(Jwt {
            header: self.header,
            claims: self.claims,
        })
    }

    /// Verifies an ES256K / ES256 token with `key`. The header's alg must be the key's
    /// (`ES256K` for secp256k1, `ES256` for P-256); signatures must be compact and low-S.
    pub fn verify_es(self, key: &PublicKey) -> Result<Jwt, JwtError> {
        let expected = match key.jwt_alg() {
            "ES256K" => Alg::Es256k,
            _ => Alg::Es256,
        };
        self.require_alg(expected)?;
        key.verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwtError::BadSignature)?;
        Ok(Jwt {
            header: self.header,
            claims: self.claims,
        })
    }
}

impl UnverifiedJwt<'_> {
    /// Verifies a JOSE-signed token (DPoP proofs, client assertions) with `key`: the header's
    /// alg must be the key's, and high-S signatures are accepted ([`PublicKey::verify_jose`]).
    pub fn verify_jose(self, key: &PublicKey) -> Result<Jwt, JwtError> {
        match self.alg() {
            Some(a) if a == key.jwt_alg() => {}
            other => {
                return Err(JwtError::AlgMismatch {
                    expected: key.jwt_alg(),
                    found: other.unwrap_or_default().to_owned(),
                })
            }
        }
        key.verify_jose(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwtError::BadSignature)?;
        Ok(Jwt {
            header: self.header,
            claims: self.claims,
        })
    }
}

impl UnverifiedJwt<'_> {
    /// The signed input and the signature, for a platform's own verifier.
    pub fn signed_parts(&self) -> (&str, &[u8]) {
        (self.signing_input, &self.signature)
    }

    /// The token as verified, when its signature was checked elsewhere with `key` (a platform's
    /// faster verifier, over [`UnverifiedJwt::signed_parts`]); the header's alg must still be
    /// the key's.
    pub fn trust_verified(self, key: &PublicKey) -> Result<Jwt, JwtError> {
        match self.alg() {
            Some(a) if a == key.jwt_alg() => Ok(Jwt {
                header: self.header,
                claims: self.claims,
            }),
            other => Err(JwtError::AlgMismatch {
                expected: key.jwt_alg(),
                found: other.unwrap_or_default().to_owned(),
            }),
        }
    }
}

impl Jwt {
    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Checks `exp` (required: valid while `now < exp`), and `nbf` / `iat` when present
    /// (neither may lie more than [`CLOCK_SKEW_SECS`] ahead of `now`). `exp` gets no skew:
    /// our own clock issued it, and clients schedule refreshes on its exact value.
    pub fn check_times(&self, now_secs: u64) -> Result<(), JwtError> {
        let exp = int_claim(&self.claims, "exp")
            .ok_or(JwtError::MissingExpiry)?
            .ok_or(JwtError::MissingExpiry)?;
        for (name, err) in [
            ("nbf", JwtError::NotYetValid),
            ("iat", JwtError::IssuedInFuture),
        ] {
            if let Some(v) = int_claim(&self.claims, name) {
                let v = v.ok_or(JwtError::BadTimeClaim(name))?;
                if v > now_secs.saturating_add(CLOCK_SKEW_SECS) {
                    return Err(err);
                }
            }
        }
        if now_secs >= exp {
            return Err(JwtError::Expired);
        }
        Ok(())
    }
}

/// `None` when absent, `Some(None)` when present but not a non-negative integer.
pub fn int_claim(claims: &Map<String, Value>, name: &str) -> Option<Option<u64>> {
    claims.get(name).map(Value::as_u64)
}

/// Signs `claims` with HS256; `header` gets `alg` set (any `alg` in it is replaced).
pub fn sign_hs256(
    mut header: Map<String, Value>,
    claims: &Map<String, Value>,
    secret: &[u8],
) -> String {
    header.insert("alg".into(), Value::from(Alg::Hs256.name()));
    let input = signing_input(&header, claims);
    let mut mac = hmac_sha256(secret);
    mac.update(input.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Signs `claims` with `key` (ES256K or ES256 by its curve); `header` gets `alg` set.
pub fn sign_es(
    mut header: Map<String, Value>,
    claims: &Map<String, Value>,
    key: &SigningKey,
) -> String {
    header.insert("alg".into(), Value::from(key.algorithm().jwt_alg()));
    let input = signing_input(&header, claims);
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Compares two byte strings in time that depends only on their lengths, never on where they
/// differ: every comparison of a secret or a MAC goes through here.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// HMAC-SHA256 of `message` under `secret`.
pub fn hmac_sha256_tag(secret: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = hmac_sha256(secret);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn hmac_sha256(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (longer ones are hashed), so this cannot fail.
    match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn signing_input(header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
    // Serializing a map of JSON values cannot fail.
    let h = serde_json::to_vec(header).unwrap_or_default();
    let c = serde_json::to_vec(claims).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h),
        URL_SAFE_NO_PAD.encode(c)
    )
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    // The engine refuses padding and non-zero trailing bits: one encoding per value.
    URL_SAFE_NO_PAD.decode(s).ok()
}

fn decode_object(segment: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64_decode(segment).ok_or(JwtError::Malformed(match what {
        "header" => "header is not base64url",
        _ => "claims are not base64url",
    }))?;
    serde_json::from_slice::<StrictObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| {
            JwtError::Malformed(match what {
                "header" => "header is not a JSON object without duplicate keys",
                _ => "claims are not a JSON object without duplicate keys",
            })
        })
}

/// A JSON object that refuses duplicate keys (serde_json would keep the last one silently,
/// letting two parsers disagree about what a token says).
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(A::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyAlgorithm;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn hs256_round_trip_and_tamper() {
        let t = sign_hs256(
            obj(json!({"typ": "at+jwt"})),
            &obj(json!({"sub": "did:plc:x", "exp": 10})),
            SECRET,
        );
        let jwt = decode(&t).unwrap().verify_hs256(SECRET).unwrap();
        assert_eq!(jwt.str_claim("sub"), Some("did:plc:x"));
        assert_eq!(jwt.header.get("alg"), Some(&json!("HS256")));
        assert_eq!(
            decode(&t)
                .unwrap()
                .verify_hs256(b"another secret")
                .unwrap_err(),
            JwtError::BadSignature
        );
        // Flip one claim byte: the MAC no longer matches.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = b64(r#"{"exp":10,"sub":"did:plc:y"}"#);
        let forged = parts.join(".");
        assert_eq!(
            decode(&forged).unwrap().verify_hs256(SECRET).unwrap_err(),
            JwtError::BadSignature
        );
    }

    #[test]
    fn alg_is_fixed_by_the_verifier() {
        let claims = obj(json!({"exp": 10}));
        // alg none with an empty signature.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":10}"#));
        assert!(matches!(
            decode(&none).unwrap().verify_hs256(SECRET),
            Err(JwtError::AlgMismatch { .. })
        ));
        // An ES256K token presented to the HS256 verifier, and the reverse.
        let key = SigningKey::generate(KeyAlgorithm::K256);
        let es = sign_es(Map::new(), &claims, &key);
        assert!(matches!(
            decode(&es).unwrap().verify_hs256(SECRET),
            Err(JwtError::AlgMismatch { .. })
        ));
        let hs = sign_hs256(Map::new(), &claims, SECRET);
        assert!(matches!(
            decode(&hs).unwrap().verify_es(&key.public_key()),
            Err(JwtError::AlgMismatch { .. })
        ));
        // The classic confusion: HS256 keyed with the public key's bytes.
        let pk_bytes = key.public_key().to_sec1_compressed();
        let confused = sign_hs256(Map::new(), &claims, &pk_bytes);
        assert!(matches!(
            decode(&confused).unwrap().verify_es(&key.public_key()),
            Err(JwtError::AlgMismatch { .. })
        ));
        // ES256 header on a K-256 key.
        let mut h = Map::new();
        h.insert("alg".into(), json!("ES256"));
        let input = format!("{}.{}", b64(r#"{"alg":"ES256"}"#), b64(r#"{"exp":10}"#));
        let sig = key.sign(input.as_bytes());
        let wrong = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert!(matches!(
            decode(&wrong).unwrap().verify_es(&key.public_key()),
            Err(JwtError::AlgMismatch { .. })
        ));
    }

    #[test]
    fn es_round_trip_both_curves() {
        for alg in [KeyAlgorithm::K256, KeyAlgorithm::P256] {
            let key = SigningKey::generate(alg);
            let t = sign_es(
                obj(json!({"typ": "JWT"})),
                &obj(json!({"iss": "did:plc:x", "exp": 5})),
                &key,
            );
            let jwt = decode(&t).unwrap().verify_es(&key.public_key()).unwrap();
            assert_eq!(jwt.header.get("alg"), Some(&json!(alg.jwt_alg())));
            let other = SigningKey::generate(alg);
            assert_eq!(
                decode(&t)
                    .unwrap()
                    .verify_es(&other.public_key())
                    .unwrap_err(),
                JwtError::BadSignature
            );
        }
    }

    #[test]
    fn strict_parsing() {
        let good_h = b64(r#"{"alg":"HS256"}"#);
        let good_c = b64(r#"{"exp":1}"#);
        let malformed = [
            String::new(),
            "a.b".to_owned(),
            format!("{good_h}.{good_c}.sig.extra"),
            // Padding is refused.
            format!("{good_h}=.{good_c}.AAAA"),
            format!("{good_h}.{good_c}.AA=="),
            // Standard (non-URL) alphabet.
            format!("{good_h}.{good_c}.++//"),
            // Not JSON objects.
            format!("{}.{good_c}.AAAA", b64("[1,2]")),
            format!("{good_h}.{}.AAAA", b64("\"exp\"")),
            format!("{good_h}.{}.AAAA", b64("{\"exp\":1")),
            // Duplicate keys.
            format!("{}.{good_c}.AAAA", b64(r#"{"alg":"HS256","alg":"none"}"#)),
            format!("{good_h}.{}.AAAA", b64(r#"{"sub":"a","sub":"b"}"#)),
        ];
        for t in malformed {
            assert!(
                matches!(decode(&t), Err(JwtError::Malformed(_))),
                "{t:?} accepted"
            );
        }
        // Non-zero trailing bits: "AB" decodes to one byte only if the extra bits are zero.
        assert!(decode(&format!("{good_h}.{good_c}.AB")).is_err());
        let crit = format!("{}.{good_c}.AAAA", b64(r#"{"alg":"HS256","crit":["exp"]}"#));
        assert_eq!(decode(&crit).unwrap_err(), JwtError::UnsupportedCritical);
        let long = format!("{good_h}.{}.AAAA", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(decode(&long).unwrap_err(), JwtError::TooLong);
    }

    #[test]
    fn time_claims() {
        let jwt = |claims: Value| Jwt {
            header: Map::new(),
            claims: obj(claims),
        };
        let t = jwt(json!({"exp": 100, "iat": 40}));
        assert_eq!(t.check_times(99), Ok(()));
        assert_eq!(t.check_times(100), Err(JwtError::Expired));
        assert_eq!(t.check_times(101), Err(JwtError::Expired));
        assert_eq!(jwt(json!({})).check_times(0), Err(JwtError::MissingExpiry));
        assert_eq!(
            jwt(json!({"exp": 1.5})).check_times(0),
            Err(JwtError::MissingExpiry)
        );
        assert_eq!(
            jwt(json!({"exp": "100"})).check_times(0),
            Err(JwtError::MissingExpiry)
        );
        assert_eq!(
            jwt(json!({"exp": -1})).check_times(0),
            Err(JwtError::MissingExpiry)
        );
        let future_iat = jwt(json!({"exp": 1000, "iat": 100 + CLOCK_SKEW_SECS + 1}));
        assert_eq!(future_iat.check_times(100), Err(JwtError::IssuedInFuture));
        assert_eq!(future_iat.check_times(101), Ok(()));
        let nbf = jwt(json!({"exp": 1000, "nbf": 100 + CLOCK_SKEW_SECS}));
        assert_eq!(nbf.check_times(100), Ok(()));
        assert_eq!(nbf.check_times(99), Err(JwtError::NotYetValid));
        assert_eq!(
            jwt(json!({"exp": 1000, "nbf": "soon"})).check_times(100),
            Err(JwtError::BadTimeClaim("nbf"))
        );
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
