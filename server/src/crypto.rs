//! Signing keys and signatures as atproto uses them: ECDSA over secp256k1 (K-256) or
//! NIST P-256, SHA-256 of the message, compact 64-byte `r||s` signatures that must be
//! low-S, and public keys written as `did:key` / Multikey strings.

use std::fmt;

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use sha2::{Digest, Sha256};

/// Multicodec varint prefixes of compressed public keys in `did:key` / Multikey strings.
const K256_PUB_PREFIX: [u8; 2] = [0xe7, 0x01];
const P256_PUB_PREFIX: [u8; 2] = [0x80, 0x24];
const DID_KEY_PREFIX: &str = "did:key:";

/// The two curves atproto allows for repository and service keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// secp256k1 (`ES256K`), the reference PDS's default.
    K256,
    /// NIST P-256 (`ES256`).
    P256,
}

impl KeyAlgorithm {
    /// The JOSE/JWT `alg` name of signatures made with this curve.
    pub fn jwt_alg(self) -> &'static str {
        match self {
            KeyAlgorithm::K256 => "ES256K",
            KeyAlgorithm::P256 => "ES256",
        }
    }

    /// The algorithm a JWT `alg` header names, if it is one of ours.
    pub fn from_jwt_alg(alg: &str) -> Option<KeyAlgorithm> {
        match alg {
            "ES256K" => Some(KeyAlgorithm::K256),
            "ES256" => Some(KeyAlgorithm::P256),
            _ => None,
        }
    }
}

/// Why a key could not be read or a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Private key bytes are not a valid scalar for the curve.
    InvalidPrivateKey,
    /// Public key bytes are not a valid compressed point for the curve.
    InvalidPublicKey,
    /// A `did:key` or Multikey string is malformed or names an unsupported key type.
    InvalidKeyEncoding(String),
    /// The signature is not 64 bytes of compact `r||s` (DER is refused).
    MalformedSignature,
    /// The signature's `s` is in the upper half of the order: malleable, refused by atproto.
    HighS,
    /// The signature does not match the message and key.
    BadSignature,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::InvalidPrivateKey => f.write_str("invalid private key"),
            CryptoError::InvalidPublicKey => f.write_str("invalid public key"),
            CryptoError::InvalidKeyEncoding(why) => write!(f, "invalid key encoding: {why}"),
            CryptoError::MalformedSignature => {
                f.write_str("signature must be 64 bytes of compact r||s")
            }
            CryptoError::HighS => f.write_str("signature is not low-S"),
            CryptoError::BadSignature => f.write_str("signature does not verify"),
        }
    }
}

impl std::error::Error for CryptoError {}

#[derive(Clone)]
enum SigningInner {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A private signing key on either curve.
#[derive(Clone)]
pub struct SigningKey(SigningInner);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(
            f,
            "SigningKey({:?}, {})",
            self.algorithm(),
            self.public_key().to_did_key()
        )
    }
}

impl SigningKey {
    /// A fresh random key from the platform's CSPRNG.
    ///
    /// Panics only if the platform has no randomness source at all, which would make
    /// every key the server could produce unsafe anyway.
    pub fn generate(alg: KeyAlgorithm) -> SigningKey {
        loop {
            let mut bytes = [0u8; 32];
            if let Err(e) = getrandom02::getrandom(&mut bytes) {
                panic!("no randomness source available: {e}");
            }
            // A uniformly random 32-byte string is a valid scalar except with
            // probability ~2^-128 (zero or above the order); draw again then.
            if let Ok(key) = SigningKey::from_bytes(alg, &bytes) {
                return key;
            }
        }
    }

    /// A key from its 32-byte big-endian scalar.
    pub fn from_bytes(alg: KeyAlgorithm, bytes: &[u8]) -> Result<SigningKey, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::InvalidPrivateKey);
        }
        let inner = match alg {
            KeyAlgorithm::K256 => SigningInner::K256(
                k256::ecdsa::SigningKey::from_slice(bytes)
                    .map_err(|_| CryptoError::InvalidPrivateKey)?,
            ),
            KeyAlgorithm::P256 => SigningInner::P256(
                p256::ecdsa::SigningKey::from_slice(bytes)
                    .map_err(|_| CryptoError::InvalidPrivateKey)?,
            ),
        };
        Ok(SigningKey(inner))
    }

    /// A key from its scalar written as 64 hex digits (either case).
    pub fn from_hex(alg: KeyAlgorithm, hex: &str) -> Result<SigningKey, CryptoError> {
        let bytes = crate::hex::decode(hex.trim()).ok_or(CryptoError::InvalidPrivateKey)?;
        SigningKey::from_bytes(alg, &bytes)
    }

    /// The 32-byte big-endian scalar.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.0 {
            SigningInner::K256(k) => k.to_bytes().to_vec(),
            SigningInner::P256(k) => k.to_bytes().to_vec(),
        }
    }

    /// The scalar as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.to_bytes())
    }

    /// Which curve this key is on.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.0 {
            SigningInner::K256(_) => KeyAlgorithm::K256,
            SigningInner::P256(_) => KeyAlgorithm::P256,
        }
    }

    /// Signs SHA-256(`msg`): compact `r||s`, always low-S (deterministic, RFC 6979).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        self.sign_digest(&digest)
    }

    /// Signs an already computed SHA-256 digest; same output form as [`SigningKey::sign`].
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 64] {
        // Signing a 32-byte prehash can only fail for a degenerate nonce, which RFC 6979
        // retries internally; the error arms are unreachable in practice.
        let mut out = [0u8; 64];
        match &self.0 {
            SigningInner::K256(k) => {
                let sig: k256::ecdsa::Signature = match k.sign_prehash(digest) {
                    Ok(s) => s,
                    Err(e) => panic!("k256 signing failed: {e}"),
                };
                let sig = sig.normalize_s().unwrap_or(sig);
                out.copy_from_slice(&sig.to_bytes());
            }
            SigningInner::P256(k) => {
                let sig: p256::ecdsa::Signature = match k.sign_prehash(digest) {
                    Ok(s) => s,
                    Err(e) => panic!("p256 signing failed: {e}"),
                };
                let sig = sig.normalize_s().unwrap_or(sig);
                out.copy_from_slice(&sig.to_bytes());
            }
        }
        out
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match &self.0 {
            SigningInner::K256(k) => PublicKey(PublicInner::K256(*k.verifying_key())),
            SigningInner::P256(k) => PublicKey(PublicInner::P256(*k.verifying_key())),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PublicInner {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// A public key on either curve, for verifying signatures and naming keys in DID documents.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(PublicInner);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_did_key())
    }
}

impl PublicKey {
    /// A key from SEC1 bytes: 33-byte compressed or 65-byte uncompressed point.
    pub fn from_sec1(alg: KeyAlgorithm, bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        let inner = match alg {
            KeyAlgorithm::K256 => PublicInner::K256(
                k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| CryptoError::InvalidPublicKey)?,
            ),
            KeyAlgorithm::P256 => PublicInner::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| CryptoError::InvalidPublicKey)?,
            ),
        };
        Ok(PublicKey(inner))
    }

    /// The 33-byte compressed SEC1 point.
    pub fn to_sec1_compressed(&self) -> Vec<u8> {
        match &self.0 {
            PublicInner::K256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            PublicInner::P256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// The 65-byte uncompressed SEC1 point (`04 || x || y`): a JWK's `x` and `y`.
    pub fn to_sec1_uncompressed(&self) -> Vec<u8> {
        match &self.0 {
            PublicInner::K256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            PublicInner::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// Which curve this key is on.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.0 {
            PublicInner::K256(_) => KeyAlgorithm::K256,
            PublicInner::P256(_) => KeyAlgorithm::P256,
        }
    }

    /// The JWT `alg` of signatures this key verifies (`ES256K` or `ES256`).
    pub fn jwt_alg(&self) -> &'static str {
        self.algorithm().jwt_alg()
    }

    /// Verifies a compact 64-byte `r||s` signature over SHA-256(`msg`).
    /// DER signatures and high-S signatures are refused, as atproto requires.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        self.verify_digest(&digest, sig)
    }

    /// Like [`PublicKey::verify`], over an already computed SHA-256 digest.
    pub fn verify_digest(&self, digest: &[u8; 32], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::MalformedSignature);
        }
        match &self.0 {
            PublicInner::K256(k) => {
                let s = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                if s.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify_prehash(digest, &s)
                    .map_err(|_| CryptoError::BadSignature)
            }
            PublicInner::P256(k) => {
                let s = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                if s.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify_prehash(digest, &s)
                    .map_err(|_| CryptoError::BadSignature)
            }
        }
    }

    /// Verifies a JOSE `ES256`/`ES256K` signature (64-byte `r||s` over SHA-256(`msg`)). Unlike
    /// atproto's own signatures, JOSE does not ask for low-S, and WebCrypto signers (browsers,
    /// Node) produce either: a high-S signature is accepted as its low-S twin.
    pub fn verify_jose(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::MalformedSignature);
        }
        let digest: [u8; 32] = Sha256::digest(msg).into();
        match &self.0 {
            PublicInner::K256(k) => {
                let s = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                let s = s.normalize_s().unwrap_or(s);
                k.verify_prehash(&digest, &s)
                    .map_err(|_| CryptoError::BadSignature)
            }
            PublicInner::P256(k) => {
                let s = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                let s = s.normalize_s().unwrap_or(s);
                k.verify_prehash(&digest, &s)
                    .map_err(|_| CryptoError::BadSignature)
            }
        }
    }

    /// The Multikey form: `z` + base58btc(multicodec prefix || compressed point).
    pub fn to_multibase(&self) -> String {
        let prefix = match self.algorithm() {
            KeyAlgorithm::K256 => K256_PUB_PREFIX,
            KeyAlgorithm::P256 => P256_PUB_PREFIX,
        };
        let mut bytes = Vec::with_capacity(35);
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&self.to_sec1_compressed());
        format!("z{}", pds_api::runtime::cid_str::base58btc_encode(&bytes))
    }

    /// Parses the Multikey form written by [`PublicKey::to_multibase`]; the curve comes
    /// from the multicodec prefix.
    pub fn from_multibase(s: &str) -> Result<PublicKey, CryptoError> {
        let bytes = decode_base58btc_multibase(s)?;
        let (alg, key) = if let Some(rest) = bytes.strip_prefix(&K256_PUB_PREFIX) {
            (KeyAlgorithm::K256, rest)
        } else if let Some(rest) = bytes.strip_prefix(&P256_PUB_PREFIX) {
            (KeyAlgorithm::P256, rest)
        } else {
            return Err(CryptoError::InvalidKeyEncoding(
                "unsupported multicodec key type".into(),
            ));
        };
        // atproto writes keys compressed; an uncompressed point here is a malformed key.
        if key.len() != 33 {
            return Err(CryptoError::InvalidPublicKey);
        }
        PublicKey::from_sec1(alg, key)
    }

    /// Parses the legacy DID-document form (`EcdsaSecp256k1VerificationKey2019` /
    /// `EcdsaSecp256r1VerificationKey2019`): base58btc of the bare compressed point, the
    /// curve given by the verification-method type.
    pub fn from_legacy_multibase(alg: KeyAlgorithm, s: &str) -> Result<PublicKey, CryptoError> {
        let bytes = decode_base58btc_multibase(s)?;
        PublicKey::from_sec1(alg, &bytes)
    }

    /// The `did:key:z...` form.
    pub fn to_did_key(&self) -> String {
        let mut s = String::with_capacity(DID_KEY_PREFIX.len() + 50);
        s.push_str(DID_KEY_PREFIX);
        s.push_str(&self.to_multibase());
        s
    }

    /// Parses a `did:key:z...` string for a K-256 or P-256 key.
    pub fn from_did_key(did: &str) -> Result<PublicKey, CryptoError> {
        let rest = did
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or_else(|| CryptoError::InvalidKeyEncoding("not a did:key".into()))?;
        PublicKey::from_multibase(rest)
    }
}

/// Verifies `sig` over `msg` with the key a `did:key` names.
pub fn verify_with_did_key(did_key: &str, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    PublicKey::from_did_key(did_key)?.verify(msg, sig)
}

fn decode_base58btc_multibase(s: &str) -> Result<Vec<u8>, CryptoError> {
    if !s.starts_with('z') {
        return Err(CryptoError::InvalidKeyEncoding(
            "expected base58btc multibase ('z')".into(),
        ));
    }
    pds_api::runtime::cid_str::base58btc_decode(&s[1..])
        .map_err(|_| CryptoError::InvalidKeyEncoding("bad base58btc".into()))
}

/// Signature checks the platform does: faster than this crate's code (WebCrypto's native P-256
/// on Workers, where the same check in wasm costs most of a millisecond), or that this crate
/// does not carry in its wasm (Ed25519 and RSA, for passkeys).
pub trait FastVerify {
    /// Verifies an ES256 signature (`r||s`, either S) by the key with this uncompressed SEC1
    /// point over `msg`; `None` when the platform could not say (the caller checks itself).
    fn verify_es256<'a>(
        &'a self,
        sec1_uncompressed: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> futures_util::future::LocalBoxFuture<'a, Option<bool>>;

    /// Verifies an Ed25519 signature by `public` (32 bytes) over `msg` (passkeys); `None`
    /// when the platform cannot.
    fn verify_ed25519<'a>(
        &'a self,
        _public: &'a [u8],
        _msg: &'a [u8],
        _sig: &'a [u8],
    ) -> futures_util::future::LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async { None })
    }

    /// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature by the key (`n`, `e`, big-endian) over
    /// `msg` (passkeys); `None` when the platform cannot.
    fn verify_rs256<'a>(
        &'a self,
        _n: &'a [u8],
        _e: &'a [u8],
        _msg: &'a [u8],
        _sig: &'a [u8],
    ) -> futures_util::future::LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_both_curves_low_s() {
        for alg in [KeyAlgorithm::K256, KeyAlgorithm::P256] {
            let key = SigningKey::generate(alg);
            let public = key.public_key();
            for i in 0..32u8 {
                let msg = [i; 40];
                let sig = key.sign(&msg);
                assert_eq!(public.verify(&msg, &sig), Ok(()));
                assert_eq!(
                    public.verify(b"other", &sig),
                    Err(CryptoError::BadSignature)
                );
            }
            let round = SigningKey::from_hex(alg, &key.to_hex()).unwrap();
            assert_eq!(round.to_bytes(), key.to_bytes());
            assert_eq!(
                PublicKey::from_did_key(&public.to_did_key()).unwrap(),
                public
            );
        }
    }

    #[test]
    fn rejects_wrong_lengths() {
        let key = SigningKey::generate(KeyAlgorithm::K256);
        let sig = key.sign(b"m");
        assert_eq!(
            key.public_key().verify(b"m", &sig[..63]),
            Err(CryptoError::MalformedSignature)
        );
        assert!(SigningKey::from_bytes(KeyAlgorithm::K256, &[1u8; 31]).is_err());
        assert!(SigningKey::from_bytes(KeyAlgorithm::P256, &[0u8; 32]).is_err());
        assert!(SigningKey::from_hex(KeyAlgorithm::P256, "zz").is_err());
        assert!(PublicKey::from_did_key("did:key:zQ3sh").is_err());
        assert!(PublicKey::from_did_key("did:web:zQ3sh").is_err());
    }
}
