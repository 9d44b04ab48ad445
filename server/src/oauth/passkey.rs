//! Passkeys (WebAuthn, level 2/3) as a relying party: the owner registers one through a one-time
//! link the command line prints, and signs in with it on the authorize page instead of the
//! password.
//!
//! What is checked (WebAuthn §7.1, §7.2): the client data's type, challenge and origin (this
//! PDS's public URL); the authenticator data's RP ID hash (the public hostname), user presence
//! and user verification; on registration the credential's COSE key (ES256, EdDSA or RS256;
//! attestation is not asked for, so none is checked); on sign-in the signature over
//! `authenticatorData || SHA-256(clientDataJSON)` and the signature counter, which must grow when
//! the authenticator keeps one. Challenges are derived from the server's key and the request
//! they belong to (an authorization request, a registration link), so pages store nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::jwt;
use crate::config::Config;
use crate::crypto::FastVerify;

/// COSE algorithm numbers.
pub const ES256: i64 = -7;
/// EdDSA (Ed25519).
pub const EDDSA: i64 = -8;
/// RSASSA-PKCS1-v1_5 with SHA-256.
pub const RS256: i64 = -257;

const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED: u8 = 0x40;

/// A challenge bound to what it is for (`purpose`) and one request (`binding`).
pub fn challenge(config: &Config, purpose: &str, binding: &str) -> String {
    let key = jwt::hmac_sha256_tag(&config.jwt_secret, b"webauthn-challenge");
    URL_SAFE_NO_PAD.encode(jwt::hmac_sha256_tag(
        &key,
        format!("{purpose}|{binding}").as_bytes(),
    ))
}

/// The RP ID: the public hostname without a port.
pub fn rp_id(config: &Config) -> &str {
    config
        .hostname
        .split(':')
        .next()
        .unwrap_or(&config.hostname)
}

/// A CBOR item, as far as WebAuthn's structures need (attestation objects, COSE keys: integer
/// map keys, which DAG-CBOR would refuse).
#[derive(Debug, Clone, PartialEq)]
enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Simple(u8),
}

fn read_cbor(b: &[u8], pos: &mut usize, depth: usize) -> Result<Cbor, String> {
    let bad = || "malformed CBOR".to_owned();
    if depth > 16 {
        return Err(bad());
    }
    let head = *b.get(*pos).ok_or_else(bad)?;
    *pos += 1;
    let (major, info) = (head >> 5, head & 0x1f);
    let arg: u64 = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let end = pos.checked_add(n).ok_or_else(bad)?;
            let bytes = b.get(*pos..end).ok_or_else(bad)?;
            *pos = end;
            bytes.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
        }
        _ => return Err(bad()),
    };
    let len = |arg: u64| usize::try_from(arg).map_err(|_| bad());
    Ok(match major {
        0 => Cbor::Int(i128::from(arg)),
        1 => Cbor::Int(-1 - i128::from(arg)),
        2 | 3 => {
            let end = pos.checked_add(len(arg)?).ok_or_else(bad)?;
            let bytes = b.get(*pos..end).ok_or_else(bad)?.to_vec();
            *pos = end;
            if major == 2 {
                Cbor::Bytes(bytes)
            } else {
                Cbor::Text(String::from_utf8(bytes).map_err(|_| bad())?)
            }
        }
        4 => {
            let mut items = Vec::with_capacity(len(arg)?.min(64));
            for _ in 0..len(arg)? {
                items.push(read_cbor(b, pos, depth + 1)?);
            }
            Cbor::Array(items)
        }
        5 => {
            let mut entries = Vec::new();
            for _ in 0..len(arg)? {
                let k = read_cbor(b, pos, depth + 1)?;
                let v = read_cbor(b, pos, depth + 1)?;
                entries.push((k, v));
            }
            Cbor::Map(entries)
        }
        7 if info < 24 => Cbor::Simple(info),
        _ => return Err(bad()),
    })
}

impl Cbor {
    fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn int_key(&self, k: i128) -> Option<&Cbor> {
        self.get(&Cbor::Int(k))
    }
    fn text_key(&self, k: &str) -> Option<&Cbor> {
        self.get(&Cbor::Text(k.to_owned()))
    }
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Cbor::Bytes(b) => Some(b),
            _ => None,
        }
    }
    fn int(&self) -> Option<i128> {
        match self {
            Cbor::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A credential's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKey {
    /// P-256: the uncompressed SEC1 point.
    Es256(Vec<u8>),
    /// Ed25519: the 32-byte public key.
    EdDsa(Vec<u8>),
    /// RSA: modulus and exponent, big-endian.
    Rs256 { n: Vec<u8>, e: Vec<u8> },
}

impl CredentialKey {
    /// The key of a COSE_Key, for the three algorithms this server takes.
    fn from_cose(key: &Cbor) -> Result<CredentialKey, String> {
        let bad = |why: &str| format!("credential key: {why}");
        let alg = key
            .int_key(3)
            .and_then(Cbor::int)
            .ok_or_else(|| bad("no alg"))?;
        let kty = key
            .int_key(1)
            .and_then(Cbor::int)
            .ok_or_else(|| bad("no kty"))?;
        let field = |k: i128| key.int_key(k).and_then(Cbor::bytes);
        match (i64::try_from(alg).unwrap_or(0), kty) {
            (ES256, 2) => {
                let (x, y) = (field(-2), field(-3));
                match (key.int_key(-1).and_then(Cbor::int), x, y) {
                    (Some(1), Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut point = vec![4u8];
                        point.extend_from_slice(x);
                        point.extend_from_slice(y);
                        crate::crypto::PublicKey::from_sec1(
                            crate::crypto::KeyAlgorithm::P256,
                            &point,
                        )
                        .map_err(|_| bad("not a P-256 point"))?;
                        Ok(CredentialKey::Es256(point))
                    }
                    _ => Err(bad("not a P-256 key")),
                }
            }
            (EDDSA, 1) => match (key.int_key(-1).and_then(Cbor::int), field(-2)) {
                (Some(6), Some(x)) if x.len() == 32 => Ok(CredentialKey::EdDsa(x.to_vec())),
                _ => Err(bad("not an Ed25519 key")),
            },
            (RS256, 3) => match (field(-1), field(-2)) {
                (Some(n), Some(e)) if n.len() >= 256 && !e.is_empty() && e.len() <= 8 => {
                    Ok(CredentialKey::Rs256 {
                        n: n.to_vec(),
                        e: e.to_vec(),
                    })
                }
                _ => Err(bad("not an RSA key of at least 2048 bits")),
            },
            _ => Err(bad("algorithm not supported (ES256, EdDSA or RS256)")),
        }
    }

    /// The COSE algorithm.
    pub fn alg(&self) -> i64 {
        match self {
            CredentialKey::Es256(_) => ES256,
            CredentialKey::EdDsa(_) => EDDSA,
            CredentialKey::Rs256 { .. } => RS256,
        }
    }

    /// The key as stored: a small JSON document.
    pub fn to_stored(&self) -> String {
        let b = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let doc = crate::data::json::JsonWriter::new().i64("alg", self.alg());
        match self {
            CredentialKey::Es256(p) => doc.str("point", &b(p)),
            CredentialKey::EdDsa(x) => doc.str("x", &b(x)),
            CredentialKey::Rs256 { n, e } => doc.str("n", &b(n)).str("e", &b(e)),
        }
        .finish()
        .to_string()
    }

    /// A stored key.
    pub fn from_stored(s: &str) -> Option<CredentialKey> {
        let v: serde_json::Value = serde_json::from_slice(s.as_bytes()).ok()?;
        let field = |k: &str| URL_SAFE_NO_PAD.decode(v.get(k)?.as_str()?).ok();
        match v.get("alg")?.as_i64()? {
            ES256 => Some(CredentialKey::Es256(field("point")?)),
            EDDSA => Some(CredentialKey::EdDsa(field("x")?)),
            RS256 => Some(CredentialKey::Rs256 {
                n: field("n")?,
                e: field("e")?,
            }),
            _ => None,
        }
    }

    /// Verifies `sig` over `msg`: ES256 here (or by the platform), EdDSA and RS256 by the
    /// platform (WebCrypto on Workers, native code otherwise).
    pub async fn verify(&self, platform: Option<&dyn FastVerify>, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            CredentialKey::Es256(point) => {
                let Some(raw) = der_to_raw(sig) else {
                    return false;
                };
                if let Some(p) = platform {
                    if let Some(ok) = p.verify_es256(point, msg, &raw).await {
                        return ok;
                    }
                }
                crate::crypto::PublicKey::from_sec1(crate::crypto::KeyAlgorithm::P256, point)
                    .is_ok_and(|k| k.verify_jose(msg, &raw).is_ok())
            }
            CredentialKey::EdDsa(x) => match platform {
                Some(p) => p.verify_ed25519(x, msg, sig).await == Some(true),
                None => false,
            },
            CredentialKey::Rs256 { n, e } => match platform {
                Some(p) => p.verify_rs256(n, e, msg, sig).await == Some(true),
                None => false,
            },
        }
    }
}

/// An ASN.1 DER ECDSA signature (`SEQUENCE { r INTEGER, s INTEGER }`) as 64 bytes `r||s`.
fn der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    let (&0x30, rest) = der.split_first()? else {
        return None;
    };
    let (&len, body) = rest.split_first()?;
    if usize::from(len) != body.len() || len >= 0x80 {
        return None;
    }
    let mut out = [0u8; 64];
    let mut pos = 0;
    for half in 0..2 {
        if body.get(pos) != Some(&0x02) {
            return None;
        }
        let n = usize::from(*body.get(pos + 1)?);
        let int = body.get(pos + 2..pos + 2 + n)?;
        pos += 2 + n;
        let int = match int {
            [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
            _ => int,
        };
        if int.is_empty() || int.len() > 32 {
            return None;
        }
        out[half * 32 + 32 - int.len()..half * 32 + 32].copy_from_slice(int);
    }
    (pos == body.len()).then_some(out)
}

/// What the client data says, checked against what it must say.
fn check_client_data(
    config: &Config,
    client_data_json: &[u8],
    kind: &str,
    challenge: &str,
) -> Result<(), String> {
    let data: serde_json::Value =
        serde_json::from_slice(client_data_json).map_err(|_| "client data is not JSON")?;
    if data.get("type").and_then(|v| v.as_str()) != Some(kind) {
        return Err(format!("client data is not {kind}"));
    }
    let sent = data.get("challenge").and_then(|v| v.as_str()).unwrap_or("");
    if !jwt::constant_time_eq(sent.as_bytes(), challenge.as_bytes()) {
        return Err("the challenge does not match".into());
    }
    if data.get("origin").and_then(|v| v.as_str()) != Some(config.public_url().as_str()) {
        return Err("the origin is not this server".into());
    }
    if data.get("crossOrigin").and_then(|v| v.as_bool()) == Some(true) {
        return Err("cross-origin ceremonies are refused".into());
    }
    Ok(())
}

/// The authenticator data's fixed part, checked: RP ID hash, user present and verified.
fn check_auth_data(config: &Config, auth_data: &[u8]) -> Result<(u8, u32), String> {
    if auth_data.len() < 37 {
        return Err("authenticator data too short".into());
    }
    let rp_hash: [u8; 32] = Sha256::digest(rp_id(config).as_bytes()).into();
    if auth_data[..32] != rp_hash {
        return Err("the credential is for another site".into());
    }
    let flags = auth_data[32];
    if flags & FLAG_USER_PRESENT == 0 || flags & FLAG_USER_VERIFIED == 0 {
        return Err("user presence and verification are required".into());
    }
    let count = u32::from_be_bytes([auth_data[33], auth_data[34], auth_data[35], auth_data[36]]);
    Ok((flags, count))
}

/// A credential the owner registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// Its id, base64url.
    pub id: String,
    pub key: CredentialKey,
    pub sign_count: u32,
}

/// Checks a registration (`navigator.credentials.create`) for `challenge`; the credential to
/// store.
pub fn verify_registration(
    config: &Config,
    challenge: &str,
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<NewCredential, String> {
    check_client_data(config, client_data_json, "webauthn.create", challenge)?;
    let mut pos = 0;
    let attestation = read_cbor(attestation_object, &mut pos, 0)?;
    let auth_data = attestation
        .text_key("authData")
        .and_then(Cbor::bytes)
        .ok_or("no authenticator data")?;
    let (flags, sign_count) = check_auth_data(config, auth_data)?;
    if flags & FLAG_ATTESTED == 0 || auth_data.len() < 55 {
        return Err("no attested credential".into());
    }
    let id_len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    if id_len == 0 || id_len > 1023 {
        return Err("bad credential id".into());
    }
    let id = auth_data
        .get(55..55 + id_len)
        .ok_or("truncated credential id")?;
    let mut key_pos = 55 + id_len;
    let cose = read_cbor(auth_data, &mut key_pos, 0)?;
    Ok(NewCredential {
        id: URL_SAFE_NO_PAD.encode(id),
        key: CredentialKey::from_cose(&cose)?,
        sign_count,
    })
}

/// What a browser answers to `navigator.credentials.get`, decoded.
pub struct SignedAssertion {
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Checks an assertion (`navigator.credentials.get`) by a stored credential with `key` and
/// counter `stored_count`, for `challenge`; the new counter.
pub async fn verify_assertion(
    config: &Config,
    platform: Option<&dyn FastVerify>,
    key: &CredentialKey,
    stored_count: u32,
    challenge: &str,
    assertion: &SignedAssertion,
) -> Result<u32, String> {
    let SignedAssertion {
        client_data_json,
        authenticator_data: auth_data,
        signature,
    } = assertion;
    check_client_data(config, client_data_json, "webauthn.get", challenge)?;
    let (_, count) = check_auth_data(config, auth_data)?;
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    if !key.verify(platform, &signed, signature).await {
        return Err("the passkey's signature does not verify".into());
    }
    // An authenticator that counts must count up: the same or a lower number means a copy.
    if (count != 0 || stored_count != 0) && count <= stored_count {
        return Err("the passkey's counter went back: it may have been cloned".into());
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signatures_become_raw() {
        let mut der = vec![0x30, 0x45, 0x02, 0x21, 0x00];
        der.extend([0x80; 32]);
        der.extend([0x02, 0x20]);
        der.extend([0x01; 32]);
        let raw = der_to_raw(&der).unwrap();
        assert_eq!(&raw[..32], &[0x80; 32]);
        assert_eq!(&raw[32..], &[0x01; 32]);
        let short = [0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07];
        let raw = der_to_raw(&short).unwrap();
        assert_eq!((raw[31], raw[63]), (5, 7));
        assert!(der_to_raw(&[0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07]).is_none());
    }

    #[test]
    fn cose_keys_of_the_three_algorithms() {
        // {1: 2, 3: -7, -1: 1, -2: x, -3: y} for a real P-256 point.
        let k = crate::crypto::SigningKey::generate(crate::crypto::KeyAlgorithm::P256);
        let point = k.public_key().to_sec1_uncompressed();
        let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
        cose.extend(&point[1..33]);
        cose.extend([0x22, 0x58, 0x20]);
        cose.extend(&point[33..]);
        let parsed = read_cbor(&cose, &mut 0, 0).unwrap();
        assert_eq!(
            CredentialKey::from_cose(&parsed).unwrap(),
            CredentialKey::Es256(point)
        );
        // {1: 1, 3: -8, -1: 6, -2: x}
        let mut ed = vec![0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20];
        ed.extend([9u8; 32]);
        let parsed = read_cbor(&ed, &mut 0, 0).unwrap();
        assert_eq!(CredentialKey::from_cose(&parsed).unwrap().alg(), EDDSA);
        // alg -257 is 0x39 0x01 0x00.
        let mut rsa = vec![
            0xa4, 0x01, 0x03, 0x03, 0x39, 0x01, 0x00, 0x20, 0x59, 0x01, 0x00,
        ];
        rsa.extend([0xc5u8; 256]);
        rsa.extend([0x21, 0x43, 0x01, 0x00, 0x01]);
        let parsed = read_cbor(&rsa, &mut 0, 0).unwrap();
        let key = CredentialKey::from_cose(&parsed).unwrap();
        assert_eq!(key.alg(), RS256);
        assert_eq!(CredentialKey::from_stored(&key.to_stored()), Some(key));
        // ES256K is not taken.
        let k1 = [0xa3, 0x01, 0x02, 0x03, 0x38, 0x2e, 0x20, 0x08];
        assert!(CredentialKey::from_cose(&read_cbor(&k1, &mut 0, 0).unwrap()).is_err());
    }
}
