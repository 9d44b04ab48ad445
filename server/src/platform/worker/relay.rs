//! The Worker's [`RelayClient`]: crawl requests through the runtime's `fetch`.

use worker::{Fetch, Headers, Method, Request, RequestInit};

use crate::maintenance::RelayClient;
use crate::storage::blobs::LocalBoxFuture;

/// Posts crawl requests with `fetch` (https and http alike).
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerRelayClient;

impl RelayClient for WorkerRelayClient {
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            let fail = |e: worker::Error| format!("{url}: {e}");
            let headers = Headers::new();
            headers
                .set("content-type", "application/json")
                .map_err(fail)?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_body(Some(String::from_utf8_lossy(body).into_owned().into()));
            let request = Request::new_with_init(url, &init).map_err(fail)?;
            let response = Fetch::Request(request).send().await.map_err(fail)?;
            Ok(response.status_code())
        })
    }
}
