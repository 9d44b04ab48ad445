//! The Worker's [`RelayClient`]: crawl requests through the runtime's `fetch`.

use super::http_client::FetchHttpClient;
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
        Box::pin(async move { FetchHttpClient::default().post_json(url, body).await })
    }
}
