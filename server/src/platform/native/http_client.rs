//! The native [`HttpClient`]: reqwest over tokio, http and https (rustls with the webpki roots,
//! no OpenSSL), redirects not followed, bodies streamed both ways.

use std::time::Duration;

use futures_util::future::{self, Either};
use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;

use crate::net::http_client::{
    BodyStream, ClientRequest, ClientResponse, HttpClient, HttpError, LocalBoxFuture, Method,
    RequestBody, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, USER_AGENT,
};

/// The longest wait for a connection (TCP and TLS) within a request's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Outbound HTTP for the native server. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct NativeHttpClient {
    client: reqwest::Client,
    timeout: Duration,
    max_response_bytes: u64,
    /// The settings it was built with: a public-only request gets a client pinned to the
    /// address that was checked.
    settings: NativeHttpClientBuilder,
}

/// Settings for a [`NativeHttpClient`].
#[derive(Debug, Clone, Default)]
pub struct NativeHttpClientBuilder {
    timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
    extra_roots: Vec<Vec<u8>>,
    overrides: Vec<(String, std::net::SocketAddr)>,
}

impl NativeHttpClientBuilder {
    /// The default time limit of an exchange (requests may set their own).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The default response body cap (requests may set their own).
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = Some(limit);
        self
    }

    /// Also trusts the CA certificate `der` (DER-encoded), besides the webpki roots: for test
    /// servers and private deployments.
    pub fn add_root_certificate_der(mut self, der: &[u8]) -> Self {
        self.extra_roots.push(der.to_vec());
        self
    }

    /// Connects to `addr` for `host` instead of asking DNS (a port in the URL still wins):
    /// for test servers standing in for named hosts, and pinned deployments.
    pub fn resolve(mut self, host: &str, addr: std::net::SocketAddr) -> Self {
        self.overrides.push((host.to_owned(), addr));
        self
    }

    /// The client.
    pub fn build(self) -> Result<NativeHttpClient, HttpError> {
        self.build_pinned(None)
    }

    /// The client, connecting to `pinned` (host, address) whatever DNS says.
    fn build_pinned(
        self,
        pinned: Option<(&str, std::net::SocketAddr)>,
    ) -> Result<NativeHttpClient, HttpError> {
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout));
        for der in &self.extra_roots {
            let cert = reqwest::Certificate::from_der(der)
                .map_err(|e| HttpError::InvalidRequest(format!("root certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        for (host, addr) in &self.overrides {
            builder = builder.resolve(host, *addr);
        }
        if let Some((host, addr)) = pinned {
            builder = builder.resolve(host, addr);
        }
        let client = builder
            .build()
            .map_err(|e| HttpError::InvalidRequest(format!("HTTP client setup: {e}")))?;
        Ok(NativeHttpClient {
            client,
            timeout,
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            settings: self,
        })
    }
}

impl NativeHttpClient {
    /// A client with the default timeout and cap, trusting the webpki roots.
    pub fn new() -> Result<NativeHttpClient, HttpError> {
        NativeHttpClient::builder().build()
    }

    /// Settings for a client.
    pub fn builder() -> NativeHttpClientBuilder {
        NativeHttpClientBuilder::default()
    }

    /// For a public-only request: a client pinned to the host's checked address, so that DNS
    /// cannot answer differently between the check and the connection. A host the client was
    /// told to resolve itself (tests, pinned deployments) is trusted as configured.
    async fn public_client(&self, url: &str) -> Result<NativeHttpClient, HttpError> {
        let refused = |why: String| HttpError::InvalidRequest(format!("{url}: {why}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| refused(e.to_string()))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| refused("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if self.settings.overrides.iter().any(|(h, _)| *h == host) {
            return Ok(self.clone());
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Network(format!("{url}: {e}")))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| HttpError::Network(format!("{url}: no address")))?;
        if let Some(private) = addrs
            .iter()
            .find(|a| !crate::net::http_client::is_public_address(a.ip()))
        {
            return Err(refused(format!("{} is not a public address", private.ip())));
        }
        self.settings.clone().build_pinned(Some((&host, first)))
    }

    async fn exchange(&self, request: ClientRequest) -> Result<ClientResponse, HttpError> {
        request.check_url()?;
        if request.public_only {
            let mut request = request;
            request.public_only = false;
            let pinned = self.public_client(&request.url).await?;
            return Box::pin(pinned.exchange(request)).await;
        }
        let timeout = request.timeout.unwrap_or(self.timeout);
        let limit = request
            .max_response_bytes
            .unwrap_or(self.max_response_bytes);
        let mut builder = self
            .client
            .request(method(request.method), &request.url)
            .timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // reqwest wants a `Send` body and ours is not (Durable Object code shares the type):
        // a local task feeds the chunks through a channel while the request runs.
        let (builder, feeder) = match request.body {
            RequestBody::Empty => (builder, None),
            RequestBody::Bytes(bytes) => (builder.body(bytes), None),
            RequestBody::Stream(body) => {
                let (tx, rx) = mpsc::channel(2);
                let chunks = stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|chunk| (chunk, rx))
                });
                (
                    builder.body(reqwest::Body::wrap_stream(chunks)),
                    Some(feed(body, tx)),
                )
            }
        };
        let built = builder.build().map_err(|e| {
            HttpError::InvalidRequest(format!("{}: {}", request.url, error_chain(&e)))
        })?;
        let send = self.client.execute(built);
        let response = match feeder {
            None => send.await,
            Some(feeder) => match future::select(Box::pin(send), Box::pin(feeder)).await {
                Either::Left((response, _)) => {
                    // Answered before the body was all sent (an early refusal): the rest of
                    // the body no longer matters.
                    response
                }
                Either::Right(((), send)) => send.await,
            },
        }
        .map_err(|e| convert(&request.url, e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let url = request.url;
        let body: BodyStream = if request.method == Method::Head {
            Box::pin(stream::empty())
        } else {
            Box::pin(
                response
                    .bytes_stream()
                    .map(move |chunk| chunk.map(|b| b.to_vec()).map_err(|e| convert(&url, e))),
            )
        };
        // A HEAD response's length describes a body that is not sent.
        let limit = if request.method == Method::Head {
            u64::MAX
        } else {
            limit
        };
        ClientResponse::new(status, headers, body, limit)
    }
}

impl HttpClient for NativeHttpClient {
    fn send(
        &self,
        request: ClientRequest,
    ) -> LocalBoxFuture<'_, Result<ClientResponse, HttpError>> {
        Box::pin(self.exchange(request))
    }
}

/// Moves `body`'s chunks into the channel reqwest reads; stops at the first error (which then
/// fails the request) or when reqwest stops reading.
async fn feed(mut body: BodyStream, tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>) {
    while let Some(chunk) = body.next().await {
        let failed = chunk.is_err();
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
        if tx.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
        Method::Options => reqwest::Method::OPTIONS,
    }
}

fn convert(url: &str, e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_builder() {
        HttpError::InvalidRequest(format!("{url}: {}", error_chain(&e)))
    } else {
        HttpError::Network(format!("{url}: {}", error_chain(&e)))
    }
}

/// An error with its causes: reqwest's own message alone ("error sending request") hides
/// whether the connection was refused or the certificate was bad.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
