//! Remote services played on 127.0.0.1 for the outbound HTTP tests: a hyper server with a
//! handler per test, over plain TCP or TLS with a CA made at test time. The servers are tasks
//! of the test's tokio runtime: dropping the runtime stops them and closes their sockets.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A response body the test servers send.
pub type TestBody = BoxBody<Bytes, Infallible>;
/// A request handler.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// A request a server saw.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl TestServer {
    /// `http://127.0.0.1:port` (or https).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// How many requests had this path (query ignored).
    pub fn hits_on(&self, path: &str) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.target.split('?').next() == Some(path))
            .count()
    }
}

/// A body of bytes.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A response with a status and body.
pub fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<TestBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(full(body))
        .unwrap()
}

/// Serves `handler` on a fresh 127.0.0.1 port, over TLS when `tls` is given. Must be called
/// inside a tokio runtime.
pub async fn serve(handler: Handler, tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let log = hits.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    log.lock().unwrap().push(Hit {
                        method: req.method().to_string(),
                        target: req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                    });
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(acceptor) => {
                        // A client that refuses the certificate ends the handshake here.
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    TestServer { addr, hits }
}

/// A handler from a synchronous function of the request head.
pub fn handler(
    f: impl Fn(&hyper::http::request::Parts) -> Response<TestBody> + Send + Sync + 'static,
) -> Handler {
    let f = Arc::new(f);
    Arc::new(move |req: Request<Incoming>| {
        let f = f.clone();
        Box::pin(async move {
            let (parts, _body) = req.into_parts();
            f(&parts)
        })
    })
}

/// A test certificate authority and a server certificate it signed for `names` (DNS names or
/// IP addresses).
pub struct TestTls {
    /// The CA certificate, DER: what the client under test is told to trust.
    pub ca_der: Vec<u8>,
    /// The server side.
    pub server: Arc<rustls::ServerConfig>,
}

impl TestTls {
    pub fn new(names: &[&str]) -> TestTls {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pds test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        // The process's provider: ring, the only one compiled in.
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        TestTls {
            ca_der: ca.der().to_vec(),
            server: Arc::new(server),
        }
    }
}

/// A current-thread runtime with timers and IO, like the native server's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
