//! Calls into the runtime's JavaScript where workers-rs has no binding (WebCrypto's verify and
//! digest stream, R2's own objects, BYOB readers), through `Reflect`: one way to read a
//! property, build an options object and call a method.

use worker::js_sys::{Array, Function, Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

/// `target[key]`, undefined when absent.
pub fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A plain object of `entries`.
pub fn object(entries: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (k, v) in entries {
        // Setting a string key on a fresh plain object cannot throw.
        let _ = Reflect::set(&object, &JsValue::from_str(k), v);
    }
    object
}

/// `target.method(...args)`.
pub fn call_sync(target: &JsValue, method: &str, args: &Array) -> Result<JsValue, JsValue> {
    let f: Function = get(target, method)
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("no method {method}")))?;
    Reflect::apply(&f, target, args)
}

/// `await target.method(...args)`.
pub async fn call(target: &JsValue, method: &str, args: &Array) -> Result<JsValue, JsValue> {
    awaited(call_sync(target, method, args)?).await
}

/// The value a promise settles to (anything but a promise is an error).
pub async fn awaited(promise: JsValue) -> Result<JsValue, JsValue> {
    let promise: Promise = promise
        .dyn_into()
        .map_err(|_| JsValue::from_str("not a promise"))?;
    JsFuture::from(promise).await
}

/// What a thrown value says.
pub fn message(thrown: &JsValue) -> String {
    thrown
        .dyn_ref::<worker::js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| thrown.as_string())
        .unwrap_or_else(|| "the runtime threw".into())
}

/// A request to `url`, built with `web_sys`'s own init. `worker::RequestInit` converts through
/// its Cloudflare options (image resizing and the like, serialized with serde-wasm-bindgen),
/// which none of these requests use: building it costs kilobytes of wasm for nothing.
pub fn request(
    url: &str,
    method: &str,
    headers: &worker::Headers,
    body: Option<&JsValue>,
    follow_redirects: bool,
) -> worker::Result<worker::Request> {
    let init = worker::web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(headers.as_ref());
    if !follow_redirects {
        init.set_redirect(worker::web_sys::RequestRedirect::Manual);
    }
    if let Some(body) = body {
        init.set_body(body);
    }
    worker::web_sys::Request::new_with_str_and_init(url, &init)
        .map(worker::Request::from)
        .map_err(|e| worker::Error::JsError(message(&e)))
}
