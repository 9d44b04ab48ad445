//! `pds status`: checks a deployment from outside, as the network sees it, with public reads
//! only (no password): the PDS answers; the account is active; its handle resolves to its DID
//! (as the PDS itself verifies it); its DID document names this PDS; the repository's head is
//! signed by the key the DID document names; its blobs; its firehose (an event replayed over a
//! real subscription); and the relays' view of the host (`com.atproto.sync.getHostStatus`, where
//! they serve it, read as the status page reads it). Each problem comes with its fix.

use super::Pds;

pub use crate::status::checks::{Finding, Level};

/// Checks the PDS at `url` and its account `identifier` (handle or DID), and how `relays` see
/// the host.
pub async fn status(url: &str, identifier: &str, relays: &[String]) -> Vec<Finding> {
    let mut found = Vec::new();
    let pds = match Pds::new(url) {
        Ok(pds) => pds,
        Err(e) => return vec![Finding::problem(e, "check the URL")],
    };
    let host = url
        .trim_end_matches('/')
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .to_owned();
    match pds.query("_health").await {
        Ok(health) => found.push(Finding::ok(format!(
            "{url} answers (version {})",
            health["version"].as_str().unwrap_or("unknown")
        ))),
        Err(e) => {
            found.push(Finding::problem(
                format!("{url} does not answer: {e}"),
                "deploy it (npx wrangler deploy --config wrangler.deploy.toml) and check its \
                 custom domain in the Cloudflare dashboard",
            ));
            return found;
        }
    }
    let repo = match pds
        .query_with("com.atproto.repo.describeRepo", &[("repo", identifier)])
        .await
    {
        Ok(repo) => repo,
        Err(e) if super::is_error(&e, "RepoDeactivated") => {
            found.push(Finding::problem(
                format!("the account {identifier} is deactivated: nothing is served"),
                "finish moving it here (pds migrate) or activate it (pds activate)",
            ));
            return found;
        }
        Err(e) => {
            found.push(Finding::problem(
                format!("the account {identifier} is not found here: {e}"),
                "check --identifier (the account's handle or DID)",
            ));
            return found;
        }
    };
    let did = repo["did"].as_str().unwrap_or_default().to_owned();
    let handle = repo["handle"].as_str().unwrap_or_default().to_owned();
    found.push(Finding::ok(format!("account {did}, handle {handle}")));
    if repo["handleIsCorrect"] == true {
        found.push(Finding::ok(format!("{handle} resolves to {did}")));
    } else {
        found.push(Finding::problem(
            format!("{handle} does not resolve to {did}"),
            crate::status::checks::handle_fix(&handle, &did),
        ));
    }
    let doc = &repo["didDoc"];
    let endpoint = super::pds_endpoint(doc).map(|e| e.trim_end_matches('/').to_owned());
    match endpoint {
        Some(e) if e == url.trim_end_matches('/') => {
            found.push(Finding::ok(format!("the DID document names this PDS ({e})")))
        }
        other => found.push(Finding::problem(
            format!(
                "the DID document names {} as the account's PDS",
                other.as_deref().unwrap_or("no PDS")
            ),
            if did.starts_with("did:plc:") {
                "point the DID at this PDS: the identity step of pds migrate".to_owned()
            } else {
                format!("this PDS serves https://{host}/.well-known/did.json: check that {did} is this host")
            },
        )),
    }
    found.push(signature_finding(&pds, &did, doc).await);
    match pds.list_blobs(&did).await {
        Ok(cids) => found.push(Finding::ok(format!("{} blobs", cids.len()))),
        Err(e) => found.push(Finding::problem(
            format!("listing the blobs failed: {e}"),
            "look at the Worker's logs (npx wrangler tail)",
        )),
    }
    found.push(firehose_finding(&pds, url).await);
    match crate::platform::native::http_client::NativeHttpClient::new() {
        Ok(http) => {
            for relay in relays {
                found.push(crate::status::checks::relay_finding(&http, relay, &host).await);
            }
        }
        Err(e) => found.push(Finding::note(format!("the relays were not asked: {e}"))),
    }
    found
}

/// Whether the repository's head is signed by the key the DID document names.
async fn signature_finding(pds: &Pds, did: &str, doc: &serde_json::Value) -> Finding {
    let key = super::atproto_key(doc);
    let Some(key) = key else {
        return Finding::problem(
            "the DID document names no #atproto key",
            "name this PDS's signing key in it (pds migrate does, for did:plc)",
        );
    };
    let checked = async {
        let commit = pds.head_commit(did).await?;
        let public = crate::crypto::PublicKey::from_did_key(&key).map_err(|e| e.to_string())?;
        commit.verify(&public).map_err(|e| e.to_string())?;
        Ok::<String, String>(commit.rev)
    }
    .await;
    match checked {
        Ok(rev) => Finding::ok(format!(
            "the repository's head (rev {rev}) is signed by the key the DID document names"
        )),
        Err(e) => Finding::problem(
            format!("the repository's head does not verify with the DID document's key: {e}"),
            "the DID document must name this PDS's signing key \
             (com.atproto.identity.getRecommendedDidCredentials)",
        ),
    }
}

/// How long the firehose check waits to connect, and then for its event.
const FIREHOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the firehose streams: the status method's subscriber count and newest seq, then a real
/// subscription from just before that seq, which must replay it.
async fn firehose_finding(pds: &Pds, url: &str) -> Finding {
    let fix = "look at the Worker's logs (npx wrangler tail)";
    let status = match pds.query("dev.rustpds.server.getStatus").await {
        Ok(status) => status,
        Err(e) => return Finding::problem(format!("the status method failed: {e}"), fix),
    };
    let subscribers = status["firehose"]["subscribers"].as_i64().unwrap_or(0);
    let last_seq = status["firehose"]["lastSeq"].as_i64();
    let base = url.trim_end_matches('/');
    let ws_base = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => format!("wss://{base}"),
    };
    let mut ws_url = format!("{ws_base}{}", crate::routes::SUBSCRIBE_REPOS_PATH);
    if let Some(seq) = last_seq {
        ws_url.push_str(&format!("?cursor={}", seq.saturating_sub(1)));
    }
    let connected = tokio::time::timeout(
        FIREHOSE_WAIT,
        tokio_tungstenite::connect_async(ws_url.as_str()),
    )
    .await;
    let mut socket = match connected {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => {
            return Finding::problem(format!("the firehose refused a subscriber: {e}"), fix)
        }
        Err(_) => return Finding::problem("the firehose did not answer in 10 s", fix),
    };
    let Some(seq) = last_seq else {
        return Finding::ok(format!(
            "the firehose accepts subscribers ({subscribers} connected, no events yet)"
        ));
    };
    let replayed = tokio::time::timeout(FIREHOSE_WAIT, async {
        use futures_util::StreamExt;
        while let Some(message) = socket.next().await {
            let bytes = match message.map_err(|e| e.to_string())? {
                tokio_tungstenite::tungstenite::Message::Binary(bytes) => bytes,
                _ => continue,
            };
            let (header, used) =
                crate::data::cbor::decode_prefix(&bytes).map_err(|e| e.to_string())?;
            let body = crate::data::cbor::decode(&bytes[used..]).map_err(|e| e.to_string())?;
            if header_field(&header, "op") == Some("-1".to_owned()) {
                return Err(format!("an error frame: {}", body_field(&body, "error")));
            }
            if header_field(&header, "t").as_deref() == Some("#info") {
                continue;
            }
            return Ok(body_field(&body, "seq"));
        }
        Err("the subscription closed".to_owned())
    })
    .await;
    let _ = socket.close(None).await;
    match replayed {
        Ok(Ok(got)) if got == seq.to_string() => Finding::ok(format!(
            "the firehose streams: seq {seq} replayed ({subscribers} subscribers before this check)"
        )),
        Ok(Ok(got)) => Finding::problem(
            format!("the firehose replayed seq {got} where {seq} was expected"),
            fix,
        ),
        Ok(Err(e)) => Finding::problem(format!("the firehose failed: {e}"), fix),
        Err(_) => Finding::problem(
            format!("the firehose sent nothing after seq {} in 10 s", seq - 1),
            fix,
        ),
    }
}

fn header_field(header: &crate::data::Value, name: &str) -> Option<String> {
    match header {
        crate::data::Value::Map(m) => m.get(name).map(value_text),
        _ => None,
    }
}

fn body_field(body: &crate::data::Value, name: &str) -> String {
    header_field(body, name).unwrap_or_default()
}

fn value_text(v: &crate::data::Value) -> String {
    match v {
        crate::data::Value::String(s) => s.clone(),
        crate::data::Value::Integer(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}
