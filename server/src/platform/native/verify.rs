//! [`FastVerify`] natively: Ed25519 and RSA signatures for passkeys (P-256 is this crate's own).

use futures_util::future::LocalBoxFuture;

use crate::crypto::FastVerify;

/// Native code for the signatures the core leaves to the platform.
#[derive(Default)]
pub struct NativeVerify;

fn ed25519(public: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public.try_into().ok()?).ok()?;
    let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
    Some(key.verify_strict(msg, &sig).is_ok())
}

fn rs256(n: &[u8], e: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    use rsa::traits::SignatureScheme;
    use sha2::Digest;
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(e),
    )
    .ok()?;
    let digest = sha2::Sha256::digest(msg);
    Some(
        rsa::Pkcs1v15Sign::new::<sha2::Sha256>()
            .verify(&key, &digest, sig)
            .is_ok(),
    )
}

impl FastVerify for NativeVerify {
    fn verify_es256<'a>(
        &'a self,
        _point: &'a [u8],
        _msg: &'a [u8],
        _sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        // The core's own P-256 code is as fast as anything here.
        Box::pin(async { None })
    }

    fn verify_ed25519<'a>(
        &'a self,
        public: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async move { ed25519(public, msg, sig) })
    }

    fn verify_rs256<'a>(
        &'a self,
        n: &'a [u8],
        e: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async move { rs256(n, e, msg, sig) })
    }
}
