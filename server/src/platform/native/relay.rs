//! The native [`RelayClient`]: crawl requests through a [`NativeHttpClient`] (http and https).

use crate::maintenance::RelayClient;
use crate::platform::native::http_client::NativeHttpClient;
use crate::storage::blobs::LocalBoxFuture;

/// Posts crawl requests with the native HTTP client.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeRelayClient;

impl RelayClient for NativeRelayClient {
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            // A client per call: crawl requests come minutes apart, so a pool would only hold
            // connections bound to whichever runtime made them.
            let client = NativeHttpClient::new().map_err(|e| e.to_string())?;
            client.post_json(url, body).await
        })
    }
}
