//! [`FastVerify`] on Workers: signatures checked by the runtime's WebCrypto (native code). P-256
//! (DPoP proofs come with every OAuth request, and this crate's wasm takes most of a millisecond
//! per signature), and for passkeys Ed25519 and RSA, which this crate's wasm does not carry.
//! Also SHA-256 of blobs ([`Sha256Stream`]), several times faster in native code than in wasm.

use futures_util::future::LocalBoxFuture;
use worker::js_sys::{Array, Function, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};

use super::js::{call, call_sync, get};
use crate::crypto::FastVerify;

/// `crypto.subtle` of the isolate.
#[derive(Default)]
pub struct WebCryptoVerify;

/// The isolate's `crypto.<name>`.
fn crypto(name: &str) -> JsValue {
    get(&get(&worker::js_sys::global(), "crypto"), name)
}

fn object(entries: &[(&str, &str)]) -> Object {
    let entries: Vec<(&str, JsValue)> = entries
        .iter()
        .map(|(k, v)| (*k, JsValue::from_str(v)))
        .collect();
    super::js::object(&entries)
}

async fn verify(point: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let curve = object(&[("name", "ECDSA"), ("namedCurve", "P-256")]);
    let algorithm = object(&[("name", "ECDSA"), ("hash", "SHA-256")]);
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
    let subtle = crypto("subtle");
    let usages = Array::of1(&JsValue::from_str("verify"));
    let import = Array::of5(
        &JsValue::from_str(format),
        data,
        algorithm,
        &JsValue::FALSE,
        &usages,
    );
    let key = call(&subtle, "importKey", &import).await.ok()?;
    let args = Array::of4(
        verify_algorithm,
        &key,
        &Uint8Array::from(sig),
        &Uint8Array::from(msg),
    );
    call(&subtle, "verify", &args).await.ok()?.as_bool()
}

/// SHA-256 fed a piece at a time, by workerd's `crypto.DigestStream`.
pub struct Sha256Stream {
    writer: JsValue,
    digest: JsValue,
}

impl Sha256Stream {
    /// A digest that has seen nothing.
    pub fn new() -> Result<Sha256Stream, JsValue> {
        let ctor: Function = crypto("DigestStream")
            .dyn_into()
            .map_err(|_| JsValue::from_str("no crypto.DigestStream"))?;
        let stream = Reflect::construct(&ctor, &Array::of1(&JsValue::from_str("SHA-256")))?;
        let writer = call_sync(&stream, "getWriter", &Array::new())?;
        let digest = get(&stream, "digest");
        Ok(Sha256Stream { writer, digest })
    }

    /// Feeds `bytes`.
    pub async fn update(&self, bytes: &[u8]) -> Result<(), JsValue> {
        call(&self.writer, "write", &Array::of1(&Uint8Array::from(bytes)))
            .await
            .map(drop)
    }

    /// The digest of everything fed.
    pub async fn finish(self) -> Result<[u8; 32], JsValue> {
        call(&self.writer, "close", &Array::new()).await?;
        let digest = Uint8Array::new(&super::js::awaited(self.digest).await?);
        let mut out = [0u8; 32];
        if digest.length() as usize != out.len() {
            return Err(JsValue::from_str("a SHA-256 digest is 32 bytes"));
        }
        digest.copy_to(&mut out);
        Ok(out)
    }
}

impl FastVerify for WebCryptoVerify {
    fn verify_ed25519<'a>(
        &'a self,
        public: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            let algorithm = object(&[("name", "Ed25519")]);
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
            ]);
            let algorithm = object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")]);
            let verify = object(&[("name", "RSASSA-PKCS1-v1_5")]);
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
