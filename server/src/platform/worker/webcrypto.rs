//! [`FastVerify`] on Workers: signatures checked by the runtime's WebCrypto (native code). P-256
//! (DPoP proofs come with every OAuth request, and this crate's wasm takes most of a millisecond
//! per signature), and for passkeys Ed25519 and RSA, which this crate's wasm does not carry.
//! Also SHA-256 of blobs ([`sha256`] whole, [`Sha256Stream`] a part at a time), several times
//! faster in native code than in wasm.

use futures_util::future::LocalBoxFuture;
use worker::js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

use crate::crypto::FastVerify;

/// `crypto.subtle` of the isolate.
#[derive(Default)]
pub struct WebCryptoVerify;

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &JsValue::from_str(key)).ok()
}

fn object(entries: &[(&str, &str)]) -> Option<Object> {
    let o = Object::new();
    for (k, v) in entries {
        Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v)).ok()?;
    }
    Some(o)
}

/// Calls `target.method(...args)` and awaits the promise it returns.
async fn call(target: &JsValue, method: &str, args: &Array) -> Option<JsValue> {
    let promise: Promise = call_sync(target, method, args)?.dyn_into().ok()?;
    JsFuture::from(promise).await.ok()
}

async fn verify(point: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let curve = object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?;
    let algorithm = object(&[("name", "ECDSA"), ("hash", "SHA-256")])?;
    import_and_verify(
        "raw",
        &Uint8Array::from(point),
        &curve,
        &algorithm,
        msg,
        sig,
    )
    .await
}

/// Imports a key (`format`, `data`, `algorithm`) for verifying, then verifies `sig` over `msg`
/// with `verify_algorithm`.
async fn import_and_verify(
    format: &str,
    data: &JsValue,
    algorithm: &Object,
    verify_algorithm: &Object,
    msg: &[u8],
    sig: &[u8],
) -> Option<bool> {
    let subtle = get(&get(&worker::js_sys::global(), "crypto")?, "subtle")?;
    let usages = Array::of1(&JsValue::from_str("verify"));
    let import = Array::of5(
        &JsValue::from_str(format),
        data,
        algorithm,
        &JsValue::FALSE,
        &usages,
    );
    let key = call(&subtle, "importKey", &import).await?;
    let args = Array::of4(
        verify_algorithm,
        &key,
        &Uint8Array::from(sig),
        &Uint8Array::from(msg),
    );
    call(&subtle, "verify", &args).await?.as_bool()
}

/// The SHA-256 digest of `bytes` by `crypto.subtle`; `None` if the runtime refuses.
pub async fn sha256(bytes: &[u8]) -> Option<[u8; 32]> {
    let subtle = get(&get(&worker::js_sys::global(), "crypto")?, "subtle")?;
    let args = Array::of2(&JsValue::from_str("SHA-256"), &Uint8Array::from(bytes));
    digest_bytes(&call(&subtle, "digest", &args).await?)
}

/// SHA-256 fed a piece at a time, by workerd's `crypto.DigestStream`.
pub struct Sha256Stream {
    writer: JsValue,
    digest: JsValue,
}

impl Sha256Stream {
    /// A digest that has seen nothing; `None` where the runtime has no `DigestStream`.
    pub fn new() -> Option<Sha256Stream> {
        let ctor: Function = get(&get(&worker::js_sys::global(), "crypto")?, "DigestStream")?
            .dyn_into()
            .ok()?;
        let stream = Reflect::construct(&ctor, &Array::of1(&JsValue::from_str("SHA-256"))).ok()?;
        let writer = call_sync(&stream, "getWriter", &Array::new())?;
        let digest = get(&stream, "digest")?;
        Some(Sha256Stream { writer, digest })
    }

    /// Feeds `bytes`; `None` if the stream refused them.
    pub async fn update(&self, bytes: &[u8]) -> Option<()> {
        call(&self.writer, "write", &Array::of1(&Uint8Array::from(bytes)))
            .await
            .map(drop)
    }

    /// The digest of everything fed.
    pub async fn finish(self) -> Option<[u8; 32]> {
        call(&self.writer, "close", &Array::new()).await?;
        let promise: Promise = self.digest.dyn_into().ok()?;
        digest_bytes(&JsFuture::from(promise).await.ok()?)
    }
}

/// Calls `target.method(...args)` and returns its result.
fn call_sync(target: &JsValue, method: &str, args: &Array) -> Option<JsValue> {
    let f: Function = get(target, method)?.dyn_into().ok()?;
    Reflect::apply(&f, target, args).ok()
}

/// A 32-byte digest from an `ArrayBuffer`.
fn digest_bytes(buffer: &JsValue) -> Option<[u8; 32]> {
    let digest = Uint8Array::new(buffer);
    let mut out = [0u8; 32];
    if digest.length() as usize != out.len() {
        return None;
    }
    digest.copy_to(&mut out);
    Some(out)
}

impl FastVerify for WebCryptoVerify {
    fn verify_ed25519<'a>(
        &'a self,
        public: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            let algorithm = object(&[("name", "Ed25519")])?;
            import_and_verify(
                "raw",
                &Uint8Array::from(public),
                &algorithm,
                &algorithm,
                msg,
                sig,
            )
            .await
        })
    }

    fn verify_rs256<'a>(
        &'a self,
        n: &'a [u8],
        e: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            use base64::Engine;
            let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
            let jwk = object(&[
                ("kty", "RSA"),
                ("n", &b64(n)),
                ("e", &b64(e)),
                ("alg", "RS256"),
            ])?;
            let algorithm = object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?;
            let verify = object(&[("name", "RSASSA-PKCS1-v1_5")])?;
            import_and_verify("jwk", &jwk, &algorithm, &verify, msg, sig).await
        })
    }

    fn verify_es256<'a>(
        &'a self,
        sec1_uncompressed: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(verify(sec1_uncompressed, msg, sig))
    }
}
