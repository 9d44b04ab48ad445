//! atrium (the Rust atproto client) over the std-only test HTTP client, so the end-to-end tests
//! drive the server the way a third-party Rust app does.

use std::sync::{Arc, Mutex};

use atrium_api::client::AtpServiceClient;
use atrium_xrpc::http::{Request, Response};
use atrium_xrpc::types::AuthorizationToken;
use atrium_xrpc::{HttpClient, XrpcClient};

/// The session's (access, refresh) tokens, shared between a test and its client.
pub type Tokens = Arc<Mutex<Option<(String, String)>>>;

/// An XRPC client for one server, presenting the session's tokens once signed in.
pub struct TestXrpc {
    base: String,
    tokens: Tokens,
}

/// atrium's service client over [`TestXrpc`].
pub type Client = AtpServiceClient<TestXrpc>;

/// A client for the server at `base` (no session yet), and the slot for its tokens.
pub fn client(base: &str) -> (Client, Tokens) {
    let tokens = Tokens::default();
    (
        AtpServiceClient::new(TestXrpc {
            base: base.to_owned(),
            tokens: tokens.clone(),
        }),
        tokens,
    )
}

impl HttpClient for TestXrpc {
    async fn send_http(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let borrowed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = super::http::request(
            &self.base,
            request.method().as_str(),
            &path,
            &borrowed,
            request.body(),
        );
        let mut builder = Response::builder().status(reply.status);
        for (k, v) in &reply.headers {
            builder = builder.header(k, v);
        }
        Ok(builder.body(reply.body)?)
    }
}

impl XrpcClient for TestXrpc {
    fn base_uri(&self) -> String {
        self.base.clone()
    }

    async fn authorization_token(&self, is_refresh: bool) -> Option<AuthorizationToken> {
        let tokens = self.tokens.lock().ok()?;
        let (access, refresh) = tokens.as_ref()?;
        Some(AuthorizationToken::Bearer(if is_refresh {
            refresh.clone()
        } else {
            access.clone()
        }))
    }
}

/// Runs a future to completion on this thread (the test HTTP client is blocking anyway).
pub fn run<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}
