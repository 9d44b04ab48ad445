//! The native outbound HTTP client against servers on 127.0.0.1, over plain http and over TLS
//! with a CA made at test time: status, headers and body round trip, streamed request and
//! response bodies, the size cap, the timeout, a refused connection, redirects left alone.

mod net_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use net_support::{full, handler, reply, runtime, serve, Handler, TestServer, TestTls};
use pds::net::http_client::{
    BodyStream, ClientRequest, HttpClient, HttpError, Method, RequestBody,
};
use pds::platform::native::http_client::NativeHttpClient;
use tokio::sync::oneshot;

/// Echoes a request: status 201, the method and the `x-test` header back as headers, the body
/// as the body.
fn echo() -> Handler {
    Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let method = req.method().to_string();
            let test = req
                .headers()
                .get("x-test")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::builder()
                .status(201)
                .header("x-method", method)
                .header("x-test", test)
                .header("content-type", "application/octet-stream")
                .body(full(body))
                .unwrap()
        })
    })
}

async fn round_trip(client: &NativeHttpClient, server: &TestServer, scheme: &str) {
    let request = ClientRequest::new(Method::Put, format!("{}/echo", server.url(scheme)))
        .header("X-Test", "hello-there")
        .body(RequestBody::Bytes(b"ping".to_vec()));
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-method"), Some("PUT"));
    assert_eq!(response.header("X-TEST"), Some("hello-there"));
    assert_eq!(response.bytes().await.unwrap(), b"ping");
    let hit = &server.hits()[0];
    assert!(
        hit.headers
            .iter()
            .any(|(k, v)| k == "user-agent" && v.starts_with("rust-pds/")),
        "{hit:?}"
    );
}

#[test]
fn plain_http_round_trip() {
    runtime().block_on(async {
        let server = serve(echo(), None).await;
        let client = NativeHttpClient::new().unwrap();
        round_trip(&client, &server, "http").await;
        let get = client
            .send(ClientRequest::get(format!("{}/echo", server.url("http"))))
            .await
            .unwrap();
        assert_eq!(get.header("x-method"), Some("GET"));
        assert_eq!(get.bytes().await.unwrap(), b"");
    });
}

#[test]
fn tls_round_trip_with_a_trusted_test_ca() {
    let tls = TestTls::new(&["127.0.0.1", "localhost"]);
    runtime().block_on(async {
        let server = serve(echo(), Some(tls.server.clone())).await;
        let client = NativeHttpClient::builder()
            .add_root_certificate_der(&tls.ca_der)
            .build()
            .unwrap();
        round_trip(&client, &server, "https").await;
        // By name too: the certificate covers localhost.
        let by_name = format!("https://localhost:{}/echo", server.addr.port());
        let response = client.send(ClientRequest::get(by_name)).await.unwrap();
        assert_eq!(response.status, 201);
    });
}

#[test]
fn tls_with_an_unknown_ca_is_a_network_error() {
    let tls = TestTls::new(&["127.0.0.1"]);
    runtime().block_on(async {
        let server = serve(echo(), Some(tls.server.clone())).await;
        // The production roots do not include the test CA.
        let client = NativeHttpClient::new().unwrap();
        let err = client
            .send(ClientRequest::get(format!("{}/echo", server.url("https"))))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Network(_)), "{err:?}");
        assert!(server.hits().is_empty(), "no request got through");
    });
}

#[test]
fn request_bodies_stream() {
    let tls = TestTls::new(&["127.0.0.1"]);
    runtime().block_on(async {
        // The server reports when the first chunk arrived; the client's body only produces its
        // second chunk after that, so the request cannot have been buffered whole.
        let (first_tx, first_rx) = oneshot::channel::<()>();
        let first_tx = Arc::new(Mutex::new(Some(first_tx)));
        let server_handler: Handler = Arc::new(move |req: Request<Incoming>| {
            let first_tx = first_tx.clone();
            Box::pin(async move {
                let mut body = req.into_body();
                let mut got = Vec::new();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        got.extend_from_slice(&data);
                        if let Some(tx) = first_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
                reply(200, "application/octet-stream", got)
            })
        });
        let server = serve(server_handler, Some(tls.server.clone())).await;
        let client = NativeHttpClient::builder()
            .add_root_certificate_der(&tls.ca_der)
            .build()
            .unwrap();
        let chunks =
            futures_util::stream::unfold((0, Some(first_rx)), |(n, first_rx)| async move {
                match n {
                    0 => Some((Ok(b"first,".to_vec()), (1, first_rx))),
                    1 => {
                        first_rx.unwrap().await.unwrap();
                        Some((Ok(b"second".to_vec()), (2, None)))
                    }
                    _ => None,
                }
            });
        let body: BodyStream = Box::pin(chunks);
        let request = ClientRequest::new(Method::Post, format!("{}/up", server.url("https")))
            .body(RequestBody::Stream(body));
        let response = client.send(request).await.unwrap();
        assert_eq!(response.bytes().await.unwrap(), b"first,second");
    });
}

#[test]
fn a_failing_request_body_fails_the_request() {
    runtime().block_on(async {
        let server = serve(echo(), None).await;
        let client = NativeHttpClient::new().unwrap();
        let body: BodyStream = Box::pin(futures_util::stream::iter(vec![
            Ok(b"part".to_vec()),
            Err(HttpError::Network("source broke".into())),
        ]));
        let request = ClientRequest::new(Method::Post, format!("{}/echo", server.url("http")))
            .body(RequestBody::Stream(body));
        let err = client.send(request).await.unwrap_err();
        assert!(matches!(err, HttpError::Network(_)), "{err:?}");
    });
}

#[test]
fn response_bodies_stream() {
    runtime().block_on(async {
        // The server holds its second chunk back until the client has read the first.
        let (read_tx, read_rx) = oneshot::channel::<()>();
        let read_rx = Arc::new(Mutex::new(Some(read_rx)));
        let server_handler: Handler = Arc::new(move |_req| {
            let read_rx = read_rx.lock().unwrap().take();
            Box::pin(async move {
                let frames =
                    futures_util::stream::unfold((0, read_rx), |(n, read_rx)| async move {
                        match n {
                            0 => Some((
                                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from("one;"))),
                                (1, read_rx),
                            )),
                            1 => {
                                read_rx.unwrap().await.unwrap();
                                Some((Ok(Frame::data(Bytes::from("two"))), (2, None)))
                            }
                            _ => None,
                        }
                    });
                Response::new(BodyExt::boxed(StreamBody::new(frames)))
            })
        });
        let server = serve(server_handler, None).await;
        let client = NativeHttpClient::new().unwrap();
        let response = client
            .send(ClientRequest::get(format!("{}/down", server.url("http"))))
            .await
            .unwrap();
        let mut stream = response.into_stream();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first, b"one;");
        read_tx.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.extend(chunk.unwrap());
        }
        assert_eq!(rest, b"two");
    });
}

#[test]
fn bodies_over_the_cap_are_refused() {
    runtime().block_on(async {
        let server = serve(
            Arc::new(|req: Request<Incoming>| {
                Box::pin(async move {
                    let big = vec![b'x'; 256 * 1024];
                    if req.uri().path() == "/declared" {
                        reply(200, "text/plain", big)
                    } else {
                        // No length up front: 64 chunks of 4 KiB.
                        let frames = futures_util::stream::iter(
                            big.chunks(4096)
                                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                                .collect::<Vec<_>>(),
                        );
                        Response::new(BodyExt::boxed(StreamBody::new(frames)))
                    }
                })
            }),
            None,
        )
        .await;
        let client = NativeHttpClient::builder()
            .max_response_bytes(100_000)
            .build()
            .unwrap();
        let url = |path: &str| format!("{}{path}", server.url("http"));
        // A declared length over the cap: refused before the body is read.
        let err = client
            .send(ClientRequest::get(url("/declared")))
            .await
            .unwrap_err();
        assert_eq!(err, HttpError::TooLarge { limit: 100_000 });
        // Streamed: refused once the count passes the cap.
        let response = client
            .send(ClientRequest::get(url("/chunked")))
            .await
            .unwrap();
        assert_eq!(
            response.bytes().await.unwrap_err(),
            HttpError::TooLarge { limit: 100_000 }
        );
        // A request's own cap wins; within it the body reads whole.
        let response = client
            .send(ClientRequest::get(url("/chunked")).max_response_bytes(256 * 1024))
            .await
            .unwrap();
        assert_eq!(response.bytes().await.unwrap().len(), 256 * 1024);
        // A smaller cap when reading.
        let response = client
            .send(ClientRequest::get(url("/chunked")).max_response_bytes(256 * 1024))
            .await
            .unwrap();
        assert_eq!(
            response.bytes_up_to(10_000).await.unwrap_err(),
            HttpError::TooLarge { limit: 10_000 }
        );
    });
}

#[test]
fn a_server_that_never_answers_times_out() {
    runtime().block_on(async {
        let server = serve(
            Arc::new(|_req| Box::pin(futures_util::future::pending())),
            None,
        )
        .await;
        let client = NativeHttpClient::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let err = client
            .send(ClientRequest::get(format!("{}/never", server.url("http"))))
            .await
            .unwrap_err();
        assert_eq!(err, HttpError::Timeout);
        assert_eq!(server.hits_on("/never"), 1, "the request did arrive");
    });
}

#[test]
fn a_refused_connection_is_a_network_error() {
    runtime().block_on(async {
        // A port that was just free: nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = NativeHttpClient::new().unwrap();
        let err = client
            .send(ClientRequest::get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        match err {
            HttpError::Network(why) => assert!(why.contains(&port.to_string()), "{why}"),
            other => panic!("{other:?}"),
        }
        let err = client
            .send(ClientRequest::get("ftp://127.0.0.1/"))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::InvalidRequest(_)), "{err:?}");
    });
}

#[test]
fn redirects_are_returned_not_followed() {
    runtime().block_on(async {
        let server = serve(
            handler(|parts| {
                if parts.uri.path() == "/moved" {
                    Response::builder()
                        .status(302)
                        .header("location", "/target")
                        .body(full(""))
                        .unwrap()
                } else {
                    reply(200, "text/plain", "target")
                }
            }),
            None,
        )
        .await;
        let client = NativeHttpClient::new().unwrap();
        let response = client
            .send(ClientRequest::get(format!("{}/moved", server.url("http"))))
            .await
            .unwrap();
        assert_eq!(response.status, 302);
        assert_eq!(response.header("location"), Some("/target"));
        assert_eq!(server.hits_on("/target"), 0);
    });
}

/// Public-only requests (URLs anyone can make the PDS fetch): a host that resolves to a
/// loopback address is refused before any connection; a host the client was told to resolve
/// itself (a test stand-in, a pinned deployment) is trusted as configured.
#[test]
fn public_only_requests_never_reach_private_addresses() {
    runtime().block_on(async {
        let server = serve(echo(), None).await;
        let client = NativeHttpClient::new().unwrap();
        for url in [
            format!("http://localhost:{}/echo", server.addr.port()),
            format!("{}/echo", server.url("http")),
        ] {
            let err = client
                .send(ClientRequest::get(url.clone()).public_only())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, HttpError::InvalidRequest(m) if m.contains("not a public address")),
                "{url}: {err:?}"
            );
        }
        assert!(server.hits().is_empty(), "no request got through");
        let pinned = NativeHttpClient::builder()
            .resolve("client.example.com", server.addr)
            .build()
            .unwrap();
        let url = format!("http://client.example.com:{}/echo", server.addr.port());
        let response = pinned
            .send(ClientRequest::get(url).public_only())
            .await
            .unwrap();
        assert_eq!(response.status, 201);
    });
    use pds::net::http_client::is_public_address;
    for private in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(!is_public_address(private.parse().unwrap()), "{private}");
    }
    for public in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
        assert!(is_public_address(public.parse().unwrap()), "{public}");
    }
}
