//! Drives the generated dispatcher in-process with a tiny handler: params coercion and
//! defaults, bad params, unknown and unimplemented methods, wrong HTTP method, JSON input
//! checks, declared errors, binary input and output.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use pds_api::com::atproto::repo::{create_record, list_records, upload_blob, ComAtprotoRepo};
use pds_api::com::atproto::sync::{get_blocks, ComAtprotoSync};
use pds_api::methods::{dispatch, lookup};
use pds_api::runtime::lex::{BlobRef, Value};
use pds_api::runtime::xrpc::{
    BinaryInput, BinaryOutput, Body, HttpMethod, MethodKind, Request, Response, Service, XrpcError,
};

/// Runs a future that never waits on I/O (everything here completes on first poll).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

struct Tiny;

/// The per-request context: here, who is calling.
struct Caller(&'static str);

impl Service for Tiny {
    type Context = Caller;
}

impl ComAtprotoRepo for Tiny {
    const SERVES_LIST_RECORDS: bool = true;
    const SERVES_CREATE_RECORD: bool = true;
    const SERVES_UPLOAD_BLOB: bool = true;

    async fn list_records(
        &self,
        cx: &Caller,
        params: list_records::Params,
    ) -> Result<list_records::Output, XrpcError> {
        // Echo what arrived, typed, so the test can see coercion and defaults.
        let echo = format!(
            "{}|{}|{}|{:?}|{}",
            params.repo.as_str(),
            params.collection.as_str(),
            params.limit,
            params.reverse,
            cx.0
        );
        Ok(list_records::Output {
            cursor: Some(echo),
            records: Vec::new(),
        })
    }

    async fn create_record(
        &self,
        _cx: &Caller,
        _params: create_record::Params,
        input: create_record::Input,
    ) -> Result<create_record::Output, XrpcError> {
        if input.swap_commit.is_some() {
            return Err(create_record::Error::InvalidSwap("commit moved".into()).into());
        }
        Err(XrpcError::invalid_request(format!(
            "got {}",
            input.collection.as_str()
        )))
    }

    async fn upload_blob(
        &self,
        _cx: &Caller,
        _params: upload_blob::Params,
        input: BinaryInput,
    ) -> Result<upload_blob::Output, XrpcError> {
        let bytes = input.body.collect(1024).await?;
        let cid = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"
            .parse()
            .unwrap();
        Ok(upload_blob::Output {
            blob: BlobRef {
                cid,
                mime_type: input.content_type.unwrap_or_default(),
                size: bytes.len() as u64,
            },
        })
    }
}

impl ComAtprotoSync for Tiny {
    const SERVES_GET_BLOCKS: bool = true;

    async fn get_blocks(
        &self,
        _cx: &Caller,
        params: get_blocks::Params,
    ) -> Result<BinaryOutput, XrpcError> {
        let joined: Vec<&str> = params.cids.iter().map(|c| c.as_str()).collect();
        let mut out = BinaryOutput::new(
            "application/vnd.ipld.car",
            Body::Bytes(joined.join(",").into_bytes()),
        );
        out.headers
            .push(("x-count".into(), params.cids.len().to_string()));
        Ok(out)
    }
}

// The groups this tiny service does not serve: defaults everywhere (501).
pds_api::unserved_app_bsky!(Tiny);
pds_api::unserved_chat_bsky!(Tiny);
pds_api::unserved_tools_ozone!(Tiny);
pds_api::unserved_dev_rustpds!(Tiny);
impl pds_api::com::atproto::admin::ComAtprotoAdmin for Tiny {}
impl pds_api::com::atproto::identity::ComAtprotoIdentity for Tiny {}
impl pds_api::com::atproto::label::ComAtprotoLabel for Tiny {}
impl pds_api::com::atproto::lexicon::ComAtprotoLexicon for Tiny {}
impl pds_api::com::atproto::moderation::ComAtprotoModeration for Tiny {}
impl pds_api::com::atproto::server::ComAtprotoServer for Tiny {}
impl pds_api::com::atproto::temp::ComAtprotoTemp for Tiny {}

fn request(
    method: &str,
    nsid: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request {
    Request {
        nsid: nsid.into(),
        method: HttpMethod::parse(method),
        query: query.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Body::Bytes(body.to_vec()),
    }
}

fn run(req: Request) -> Response {
    block_on(dispatch(&Tiny, &Caller("alice"), req))
}

fn body_bytes(r: Response) -> Vec<u8> {
    match r.body {
        Body::Bytes(b) => b,
        Body::Stream(_) => panic!("unexpected stream"),
    }
}

fn json_of(r: Response) -> (u16, serde_json::Value) {
    let status = r.status;
    (status, serde_json::from_slice(&body_bytes(r)).unwrap())
}

fn error_of(r: Response) -> (u16, String, String) {
    let (status, j) = json_of(r);
    (
        status,
        j["error"].as_str().unwrap().into(),
        j["message"].as_str().unwrap().into(),
    )
}

const LIST: &str = "com.atproto.repo.listRecords";

#[test]
fn params_are_coerced_and_defaults_applied() {
    let r = run(request(
        "GET",
        LIST,
        "repo=did%3Aplc%3Aabc&collection=app.bsky.feed.post",
        &[],
        b"",
    ));
    let (status, j) = json_of(r);
    assert_eq!(status, 200);
    assert_eq!(j["cursor"], "did:plc:abc|app.bsky.feed.post|50|None|alice");
    assert_eq!(j["records"], serde_json::json!([]));

    let r = run(request(
        "GET",
        LIST,
        "repo=alice.test&collection=a.b.c&limit=7&reverse=true",
        &[],
        b"",
    ));
    assert_eq!(
        json_of(r).1["cursor"],
        "alice.test|a.b.c|7|Some(true)|alice"
    );
}

#[test]
fn bad_params_are_400_invalid_request() {
    let cases = [
        ("collection=a.b.c", "Params must have the property \"repo\""),
        (
            "repo=alice.test&collection=a.b.c&limit=abc",
            "Params/limit must be an integer",
        ),
        (
            "repo=alice.test&collection=a.b.c&limit=1000",
            "Params/limit can not be greater than 100",
        ),
        (
            "repo=alice.test&collection=a.b.c&limit=0",
            "Params/limit can not be less than 1",
        ),
        (
            "repo=alice.test&collection=a.b.c&reverse=maybe",
            "Params/reverse must be a boolean",
        ),
    ];
    for (query, message) in cases {
        let (status, error, msg) = error_of(run(request("GET", LIST, query, &[], b"")));
        assert_eq!((status, error.as_str()), (400, "InvalidRequest"), "{query}");
        assert_eq!(msg, message, "{query}");
    }
    let (status, _, msg) = error_of(run(request(
        "GET",
        LIST,
        "repo=not%20valid&collection=a.b.c",
        &[],
        b"",
    )));
    assert_eq!(status, 400);
    assert!(
        msg.starts_with("Params/repo must be a valid at-identifier"),
        "{msg}"
    );
}

#[test]
fn repeated_keys_become_arrays_and_binary_output_carries_headers() {
    let c1 = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";
    let c2 = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy";
    let q = format!("did=did:plc:abc&cids={c1}&cids={c2}");
    let r = run(request("GET", "com.atproto.sync.getBlocks", &q, &[], b""));
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .contains(&("content-type".into(), "application/vnd.ipld.car".into())));
    assert!(r.headers.contains(&("x-count".into(), "2".into())));
    assert_eq!(body_bytes(r), format!("{c1},{c2}").into_bytes());
}

#[test]
fn unknown_and_unimplemented_methods_are_501() {
    for nsid in ["com.example.nothing", "com.atproto.repo.getRecord"] {
        let (status, error, message) = error_of(run(request(
            "GET",
            nsid,
            "repo=a.test&collection=a.b.c&rkey=x",
            &[],
            b"",
        )));
        assert_eq!(
            (status, error.as_str(), message.as_str()),
            (501, "MethodNotImplemented", "Method Not Implemented")
        );
    }
    // A method the service does not serve is not decoded: params that would be a 400 for a
    // served one still get the 501.
    let (status, error, _) = error_of(run(request(
        "GET",
        "com.atproto.repo.getRecord",
        "limit=nope",
        &[],
        b"",
    )));
    assert_eq!((status, error.as_str()), (501, "MethodNotImplemented"));
}

#[test]
fn serves_reports_the_handlers_constants() {
    use pds_api::methods::serves;
    for nsid in [
        LIST,
        CREATE,
        "com.atproto.repo.uploadBlob",
        "com.atproto.sync.getBlocks",
    ] {
        assert!(serves::<Tiny>(nsid), "{nsid}");
    }
    for nsid in [
        "com.atproto.repo.getRecord",
        "com.atproto.sync.subscribeRepos",
        "com.example.nothing",
    ] {
        assert!(!serves::<Tiny>(nsid), "{nsid}");
    }
}

#[test]
fn wrong_http_method_is_400() {
    let (status, error, message) = error_of(run(request("POST", LIST, "", &[], b"")));
    assert_eq!(
        (status, error.as_str(), message.as_str()),
        (
            400,
            "InvalidRequest",
            "Incorrect HTTP method (POST) expected GET"
        )
    );
    let (status, _, message) = error_of(run(request(
        "GET",
        "com.atproto.repo.createRecord",
        "",
        &[],
        b"",
    )));
    assert_eq!(
        (status, message.as_str()),
        (400, "Incorrect HTTP method (GET) expected POST")
    );
}

const CREATE: &str = "com.atproto.repo.createRecord";
const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn json_input_is_checked() {
    let good =
        br#"{"repo": "alice.test", "collection": "app.bsky.feed.post", "record": {"text": "hi"}}"#;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], &'a str);
    let cases: [Case; 5] = [
        (&[JSON], b"{not json", "Invalid JSON body"),
        (
            &[("content-type", "text/plain")],
            good,
            "Wrong request encoding (Content-Type): text/plain",
        ),
        (
            &[],
            good,
            "Request encoding (Content-Type) required but not provided",
        ),
        (
            &[JSON],
            br#"{"repo": "alice.test", "record": {}}"#,
            "Input must have the property \"collection\"",
        ),
        (
            &[JSON],
            b"",
            "A request body is expected but none was provided",
        ),
    ];
    for (headers, body, message) in cases {
        let (status, error, msg) = error_of(run(request("POST", CREATE, "", headers, body)));
        assert_eq!((status, error.as_str()), (400, "InvalidRequest"));
        assert!(msg.starts_with(message), "got {msg:?}, want {message:?}");
    }
    // Valid input reaches the handler (which answers with what it saw).
    let headers = [("Content-Type", "application/json; charset=utf-8")];
    let (_, _, msg) = error_of(run(request("POST", CREATE, "", &headers, good)));
    assert_eq!(msg, "got app.bsky.feed.post");
}

#[test]
fn declared_errors_render_with_their_name() {
    let body = br#"{"repo": "alice.test", "collection": "a.b.c", "record": {},
        "swapCommit": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"}"#;
    let (status, error, message) = error_of(run(request("POST", CREATE, "", &[JSON], body)));
    assert_eq!(
        (status, error.as_str(), message.as_str()),
        (400, "InvalidSwap", "commit moved")
    );
}

#[test]
fn binary_input_reaches_the_handler() {
    let r = run(request(
        "POST",
        "com.atproto.repo.uploadBlob",
        "",
        &[("content-type", "image/png")],
        b"\x89PNG",
    ));
    let (status, j) = json_of(r);
    assert_eq!(status, 200);
    assert_eq!(j["blob"]["mimeType"], "image/png");
    assert_eq!(j["blob"]["size"], 4);
    assert_eq!(j["blob"]["$type"], "blob");
    // A query refuses a body.
    let (status, _, msg) = error_of(run(request(
        "GET",
        LIST,
        "repo=a.test&collection=a.b.c",
        &[],
        b"x",
    )));
    assert_eq!(
        (status, msg.as_str()),
        (400, "A request body was provided when none was expected")
    );
}

#[test]
fn method_table_carries_kind_and_encodings() {
    let meta = lookup(CREATE, HttpMethod::Post).unwrap();
    assert_eq!(meta.kind, MethodKind::Procedure);
    assert_eq!(meta.errors, &["InvalidSwap"]);
    assert_eq!(meta.input.unwrap().mime, "application/json");
    assert_eq!(
        lookup("com.atproto.server.describeServer", HttpMethod::Get)
            .unwrap()
            .kind,
        MethodKind::Query
    );
    let blob = lookup("com.atproto.repo.uploadBlob", HttpMethod::Post).unwrap();
    assert_eq!(
        (blob.input.unwrap().mime, blob.input.unwrap().json),
        ("*/*", false)
    );
    assert_eq!(
        lookup("com.example.x", HttpMethod::Get).unwrap_err().status,
        501
    );
    assert!(pds_api::methods::METHODS
        .windows(2)
        .all(|w| w[0].nsid < w[1].nsid));
}

#[test]
fn record_validators_by_collection() {
    use pds_api::records::{is_known_record_type, validate_record, RECORDS};
    assert_eq!(RECORDS.len(), 22);
    assert!(is_known_record_type("app.bsky.feed.post"));
    assert!(!is_known_record_type("com.example.nope"));
    let post = |text: &str| {
        pds_api::runtime::serde_value::value_from_json(
            serde_json::json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-01-01T00:00:00Z"})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(
        validate_record("app.bsky.feed.post", &post("hello")),
        Some(Ok(()))
    );
    let err = validate_record("app.bsky.feed.post", &post(&"é".repeat(301)))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.message,
        "Record/text must not be longer than 300 graphemes"
    );
    let img = serde_json::json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2024-01-01T00:00:00Z",
        "embed": {"$type": "app.bsky.embed.images", "images": [{"image": {"$type": "blob", "mimeType": "image/png",
        "size": 10, "ref": {"$link": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"}}, "alt": 5}]}});
    let v = pds_api::runtime::serde_value::value_from_json(img.to_string().as_bytes()).unwrap();
    let err = validate_record("app.bsky.feed.post", &v)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.path, "Record/embed/images/0/alt");
    assert_eq!(validate_record("com.example.nope", &Value::Null), None);
}
