//! [`FastVerify`] on Workers: P-256 signatures checked by the runtime's WebCrypto (native code),
//! not by this crate's wasm, which takes most of a millisecond per signature (DPoP proofs come
//! with every OAuth request).

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

async fn call(subtle: &JsValue, method: &str, args: &Array) -> Option<JsValue> {
    let f: Function = get(subtle, method)?.dyn_into().ok()?;
    let promise: Promise = Reflect::apply(&f, subtle, args).ok()?.dyn_into().ok()?;
    JsFuture::from(promise).await.ok()
}

async fn verify(point: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let subtle = get(&get(&worker::js_sys::global(), "crypto")?, "subtle")?;
    let curve = object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?;
    let usages = Array::of1(&JsValue::from_str("verify"));
    let import = Array::of5(
        &JsValue::from_str("raw"),
        &Uint8Array::from(point),
        &curve,
        &JsValue::FALSE,
        &usages,
    );
    let key = call(&subtle, "importKey", &import).await?;
    let algorithm = object(&[("name", "ECDSA"), ("hash", "SHA-256")])?;
    let args = Array::of4(
        &algorithm,
        &key,
        &Uint8Array::from(sig),
        &Uint8Array::from(msg),
    );
    call(&subtle, "verify", &args).await?.as_bool()
}

impl FastVerify for WebCryptoVerify {
    fn verify_es256<'a>(
        &'a self,
        sec1_uncompressed: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    ) -> LocalBoxFuture<'a, Option<bool>> {
        Box::pin(verify(sec1_uncompressed, msg, sig))
    }
}
