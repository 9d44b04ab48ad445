//! The Worker's [`HttpClient`]: the runtime's `fetch`, with an `AbortSignal` for the timeout,
//! redirects returned as they are, request bodies streamed through a `ReadableStream`.

use std::time::Duration;

use futures_util::future::{self, Either};
use futures_util::{stream, StreamExt};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{AbortController, Date, Delay, Fetch, Headers};

use crate::net::http_client::{
    BodyStream, ClientRequest, ClientResponse, HttpClient, HttpError, LocalBoxFuture, Method,
    RequestBody, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, USER_AGENT,
};

/// Outbound HTTP through `fetch`.
#[derive(Debug, Clone, Copy)]
pub struct FetchHttpClient {
    /// The time limit of an exchange when the request sets none.
    pub timeout: Duration,
    /// The response body cap when the request sets none.
    pub max_response_bytes: u64,
}

impl Default for FetchHttpClient {
    fn default() -> Self {
        FetchHttpClient {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl HttpClient for FetchHttpClient {
    fn send(
        &self,
        request: ClientRequest,
    ) -> LocalBoxFuture<'_, Result<ClientResponse, HttpError>> {
        Box::pin(exchange(*self, request))
    }
}

/// Milliseconds since the epoch (the runtime's clock; `SystemTime` panics on wasm32).
fn now_ms() -> u64 {
    Date::now().as_millis()
}

async fn exchange(
    client: FetchHttpClient,
    request: ClientRequest,
) -> Result<ClientResponse, HttpError> {
    request.check_url()?;
    let timeout = request.timeout.unwrap_or(client.timeout);
    let limit = request
        .max_response_bytes
        .unwrap_or(client.max_response_bytes);
    let deadline = now_ms().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    let url = request.url.clone();
    let invalid = |e: worker::Error| HttpError::InvalidRequest(format!("{url}: {e}"));

    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.append(name, value).map_err(invalid)?;
    }
    if request.header_value("user-agent").is_none() {
        headers.set("user-agent", USER_AGENT).map_err(invalid)?;
    }
    let body: Option<JsValue> = match request.body {
        RequestBody::Empty => None,
        RequestBody::Bytes(bytes) => Some(Uint8Array::from(bytes.as_slice()).into()),
        RequestBody::Stream(body) => {
            let chunks = body.map(|chunk| match chunk {
                Ok(bytes) => Ok(JsValue::from(Uint8Array::from(bytes.as_slice()))),
                Err(e) => Err(JsValue::from_str(&e.to_string())),
            });
            Some(
                wasm_streams::ReadableStream::from_stream(chunks)
                    .into_raw()
                    .into(),
            )
        }
    };
    let fetch_request = super::js::request(
        &request.url,
        request.method.as_str(),
        &headers,
        body.as_ref(),
        false,
    )
    .map_err(invalid)?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(fetch_request);
    let sent = Box::pin(fetch.send_with_signal(&signal));
    let mut response = match future::select(sent, Box::pin(Delay::from(timeout))).await {
        Either::Left((response, _)) => {
            response.map_err(|e| HttpError::Network(format!("{url}: {e}")))?
        }
        Either::Right(((), _)) => {
            controller.abort();
            return Err(HttpError::Timeout);
        }
    };
    let status = response.status_code();
    let mut headers: Vec<(String, String)> = response.headers().entries().collect();
    // The runtime decodes gzip and brotli bodies itself (it asks for them whatever the request
    // said) but keeps their headers: the body read here is the decoded one, so the headers
    // must not say otherwise.
    let decoded = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-encoding")
            && matches!(v.trim().to_ascii_lowercase().as_str(), "gzip" | "br")
    });
    if decoded {
        headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("content-encoding") && !k.eq_ignore_ascii_case("content-length")
        });
    }
    let body: BodyStream = if request.method == Method::Head {
        Box::pin(stream::empty())
    } else {
        match response.stream() {
            Ok(raw) => deadline_stream(raw, deadline, controller, url),
            // A response without a body (204, 304).
            Err(_) => Box::pin(stream::empty()),
        }
    };
    // A HEAD response's length describes a body that is not sent.
    let limit = if request.method == Method::Head {
        u64::MAX
    } else {
        limit
    };
    ClientResponse::new(status, headers, body, limit)
}

/// The response body, each read bounded by what is left of the exchange's time; past the
/// deadline the fetch is aborted and the stream ends with [`HttpError::Timeout`].
fn deadline_stream(
    raw: worker::ByteStream,
    deadline: u64,
    controller: AbortController,
    url: String,
) -> BodyStream {
    Box::pin(stream::unfold(Some((raw, controller)), move |state| {
        let url = url.clone();
        async move {
            let (mut raw, controller) = state?;
            let left = deadline.saturating_sub(now_ms());
            let wait = Box::pin(Delay::from(Duration::from_millis(left)));
            let outcome = future::select(raw.next(), wait).await;
            match outcome {
                Either::Left((Some(Ok(chunk)), _)) => Some((Ok(chunk), Some((raw, controller)))),
                Either::Left((Some(Err(e)), _)) => {
                    Some((Err(HttpError::Network(format!("{url}: {e}"))), None))
                }
                Either::Left((None, _)) => None,
                Either::Right(((), _)) => {
                    controller.abort();
                    Some((Err(HttpError::Timeout), None))
                }
            }
        }
    }))
}
