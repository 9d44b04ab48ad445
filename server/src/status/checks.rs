//! The deployment's health as the network sees it: whether the handle resolves to the DID,
//! whether the DID document names this PDS and its signing key, and how each relay sees this
//! host (`com.atproto.sync.getHostStatus`). Background maintenance runs these every
//! [`CHECK_INTERVAL_MS`] and stores the outcome for the status page; `pds status` runs the
//! relay check from outside with the same interpretation ([`relay_finding`]).

use crate::account::Account;
use crate::config::Config;
use crate::net::http_client::{ClientRequest, HttpClient};
use crate::storage::status::CheckOutcome;

/// How often maintenance runs the checks.
pub const CHECK_INTERVAL_MS: i64 = 3_600_000;
/// How long one relay may take to answer.
const RELAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The most of a relay's answer that is read.
const RELAY_ANSWER_LIMIT: u64 = 64 * 1024;

/// One finding of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How it stands.
    pub level: Level,
    /// What was found.
    pub what: String,
    /// What to do about it (for problems).
    pub fix: Option<String>,
}

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// As it should be.
    Ok,
    /// Worth knowing; not wrong.
    Note,
    /// Wrong.
    Problem,
}

impl Level {
    /// Its name in the status lexicon (`ok`, `note`, `problem`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Problem => "problem",
        }
    }
}

impl Finding {
    /// Something as it should be.
    pub fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }

    /// Something worth knowing.
    pub fn note(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Note,
            what: what.into(),
            fix: None,
        }
    }

    /// Something wrong, and what to do about it.
    pub fn problem(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Problem,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    /// The finding as a line (and its fix on the next).
    pub fn render(&self) -> String {
        let tag = match self.level {
            Level::Ok => "ok     ",
            Level::Note => "note   ",
            Level::Problem => "PROBLEM",
        };
        match &self.fix {
            Some(fix) => format!("{tag} {}\n        fix: {fix}", self.what),
            None => format!("{tag} {}", self.what),
        }
    }

    /// The finding stored under `name`, checked at `now_ms`.
    pub fn outcome(self, name: impl Into<String>, now_ms: i64) -> CheckOutcome {
        CheckOutcome {
            name: name.into(),
            level: self.level.as_str().to_owned(),
            summary: self.what,
            fix: self.fix,
            checked_ms: now_ms,
        }
    }
}

/// The fix for a handle that does not resolve to `did`.
pub fn handle_fix(handle: &str, did: &str) -> String {
    format!(
        "a DNS TXT record _atproto.{handle} with the value \"did={did}\", or \
         https://{handle}/.well-known/atproto-did answering {did}"
    )
}

/// Runs every check for the account `config` describes (its effective configuration: the stored
/// handle), each looked up anew.
pub async fn run(config: &Config, account: &Account, now_ms: i64) -> Vec<CheckOutcome> {
    let resolver = account.resolver(config);
    let (did, handle) = (config.did.as_str(), config.handle.as_str());
    let handle_finding = match resolver.refresh_handle(handle).await {
        Ok(found) if found.as_str() == did => Finding::ok(format!("{handle} resolves to {did}")),
        Ok(other) => Finding::problem(
            format!("{handle} resolves to {other}, not {did}"),
            handle_fix(handle, did),
        ),
        Err(e) => Finding::problem(
            format!("{handle} does not resolve: {e}"),
            handle_fix(handle, did),
        ),
    };
    let document_finding = match resolver.refresh_did(did).await {
        Ok(doc) => {
            let endpoint = doc
                .pds_endpoint()
                .map(|e| e.trim_end_matches('/').to_owned());
            let ours = config.public_url();
            let key = doc.signing_key();
            if endpoint.as_deref() != Some(ours.trim_end_matches('/')) {
                Finding::problem(
                    format!(
                        "the DID document names {} as the account's PDS",
                        endpoint.as_deref().unwrap_or("no PDS")
                    ),
                    document_fix(config),
                )
            } else if key != Some(config.signing_key.public_key()) {
                Finding::problem(
                    "the DID document does not name this PDS's signing key",
                    document_fix(config),
                )
            } else {
                Finding::ok("the DID document names this PDS and its signing key")
            }
        }
        Err(e) => Finding::problem(
            format!("the DID document could not be read: {e}"),
            document_fix(config),
        ),
    };
    let mut outcomes = vec![
        handle_finding.outcome("handle", now_ms),
        document_finding.outcome("didDocument", now_ms),
    ];
    for relay in &config.maintenance.relays {
        let finding = relay_finding(account.http.as_ref(), relay, &config.hostname).await;
        outcomes.push(finding.outcome(format!("relay:{relay}"), now_ms));
    }
    outcomes
}

fn document_fix(config: &Config) -> String {
    if config.did.as_str().starts_with("did:plc:") {
        "point the DID at this PDS: the identity step of pds migrate".to_owned()
    } else {
        format!(
            "this PDS serves {}/.well-known/did.json: check that {} is this host",
            config.public_url(),
            config.did.as_str()
        )
    }
}

/// How the relay at `relay` (a base URL, or a bare hostname meaning https) sees `host`.
pub async fn relay_finding(http: &dyn HttpClient, relay: &str, host: &str) -> Finding {
    let base = if relay.contains("://") {
        relay.trim_end_matches('/').to_owned()
    } else {
        format!("https://{relay}")
    };
    let crawl_fix = format!(
        "ask it to crawl: curl -X POST {base}/xrpc/com.atproto.sync.requestCrawl \
         -H 'content-type: application/json' -d '{{\"hostname\":\"{host}\"}}'"
    );
    let url = format!(
        "{base}/xrpc/com.atproto.sync.getHostStatus?hostname={}",
        query_escape(host)
    );
    let request = ClientRequest::get(url)
        .timeout(RELAY_TIMEOUT)
        .max_response_bytes(RELAY_ANSWER_LIMIT);
    let answer = async {
        let response = http.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status;
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        let json = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
        Ok::<_, String>((status, json))
    }
    .await;
    match answer {
        Ok((200, status)) => match status["status"].as_str() {
            Some("active") => Finding::ok(format!(
                "{base} crawls this host (last seq {})",
                status["seq"]
            )),
            Some(other) => Finding::problem(format!("{base} has this host as {other}"), crawl_fix),
            None => Finding::note(format!("{base} answered getHostStatus without a status")),
        },
        Ok((_, error)) if error["error"] == "HostNotFound" => {
            Finding::problem(format!("{base} does not know this host"), crawl_fix)
        }
        Ok((status, error)) => Finding::note(format!(
            "{base} does not tell its view of this host: {status} {}",
            error["error"].as_str().unwrap_or("")
        )),
        Err(e) => Finding::note(format!("{base} does not tell its view of this host: {e}")),
    }
}

/// `s` for a URL's query string (hostnames only need `:` escaped, for a port).
fn query_escape(s: &str) -> String {
    s.replace('%', "%25").replace(':', "%3A")
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::net::http_client::{body_from_chunks, ClientResponse, HttpError};
    use futures_util::future::LocalBoxFuture;
    use std::rc::Rc;

    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const KEY: &str = "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c";

    /// Answers by URL prefix: (prefix, status, JSON body); anything else fails to connect.
    struct Scripted(Vec<(String, u16, serde_json::Value)>);

    impl HttpClient for Scripted {
        fn send(
            &self,
            request: ClientRequest,
        ) -> LocalBoxFuture<'_, Result<ClientResponse, HttpError>> {
            let answer = self
                .0
                .iter()
                .find(|(prefix, _, _)| request.url.starts_with(prefix.as_str()))
                .cloned();
            Box::pin(async move {
                let (_, status, body) =
                    answer.ok_or_else(|| HttpError::Network("connection refused".into()))?;
                ClientResponse::new(
                    status,
                    vec![("content-type".into(), "application/json".into())],
                    body_from_chunks(vec![body.to_string().into_bytes()]),
                    1 << 20,
                )
            })
        }
    }

    fn config() -> Config {
        let vars = [
            (crate::config::vars::HOSTNAME, "pds.example.com"),
            (crate::config::vars::DID, DID),
            (crate::config::vars::HANDLE, "alice.example.com"),
            (crate::config::vars::SIGNING_KEY, KEY),
            (
                crate::config::vars::PASSWORD_HASH,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            ),
            (crate::config::vars::JWT_SECRET, &"00".repeat(32)),
            (crate::config::vars::PLC_URL, "https://plc.test"),
            (crate::config::vars::DOH_URL, "https://dns.test/dns-query"),
            (
                crate::config::vars::RELAYS,
                "https://up.test,https://unknown.test,https://throttled.test,https://broken.test",
            ),
        ];
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn document(config: &Config, endpoint: &str) -> serde_json::Value {
        serde_json::json!({
            "id": DID,
            "alsoKnownAs": ["at://alice.example.com"],
            "verificationMethod": [{
                "id": format!("{DID}#atproto"),
                "type": "Multikey",
                "controller": DID,
                "publicKeyMultibase": config.signing_key.public_key().to_multibase(),
            }],
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": endpoint,
            }],
        })
    }

    fn run_with(script: Vec<(String, u16, serde_json::Value)>) -> Vec<CheckOutcome> {
        let config = config();
        let dir = std::env::temp_dir().join(format!("pds-checks-{}", std::process::id()));
        let account = Account::open(
            Box::new(crate::platform::native::NativeSql::open_in_memory().unwrap()),
            Box::new(crate::platform::native::DirBlobStore::open(&dir).unwrap()),
            Box::new(crate::clock::ManualClock::new(1_700_000_000_000_000)),
        )
        .with_http(Rc::new(Scripted(script)));
        futures_executor::block_on(run(&config, &account, 7))
    }

    fn level_of<'a>(outcomes: &'a [CheckOutcome], name: &str) -> (&'a str, &'a str) {
        let o = outcomes.iter().find(|o| o.name == name).unwrap();
        (o.level.as_str(), o.summary.as_str())
    }

    #[test]
    fn each_check_reads_what_the_network_answers() {
        let config = config();
        let relays = |answers: [(u16, serde_json::Value); 4]| {
            ["up", "unknown", "throttled", "broken"]
                .into_iter()
                .zip(answers)
                .map(|(name, (status, body))| (format!("https://{name}.test/"), status, body))
                .collect::<Vec<_>>()
        };
        let mut script = vec![
            (
                "https://dns.test/".to_owned(),
                200,
                serde_json::json!({ "Status": 0, "Answer": [
                    { "name": "_atproto.alice.example.com.", "type": 16, "TTL": 60, "data": format!("\"did={DID}\"") }
                ] }),
            ),
            (
                format!("https://plc.test/{DID}"),
                200,
                document(&config, "https://pds.example.com"),
            ),
        ];
        script.extend(relays([
            (
                200,
                serde_json::json!({ "hostname": "pds.example.com", "seq": 9, "status": "active" }),
            ),
            (
                400,
                serde_json::json!({ "error": "HostNotFound", "message": "no such host" }),
            ),
            (
                200,
                serde_json::json!({ "hostname": "pds.example.com", "status": "throttled" }),
            ),
            (500, serde_json::json!({ "error": "InternalServerError" })),
        ]));
        let outcomes = run_with(script.clone());
        assert_eq!(outcomes.len(), 6);
        assert!(outcomes.iter().all(|o| o.checked_ms == 7));
        assert_eq!(
            level_of(&outcomes, "handle"),
            (
                "ok",
                "alice.example.com resolves to did:plc:ewvi7nxzyoun6zhxrhs64oiz"
            )
        );
        assert_eq!(
            level_of(&outcomes, "didDocument"),
            ("ok", "the DID document names this PDS and its signing key")
        );
        assert_eq!(
            level_of(&outcomes, "relay:https://up.test"),
            ("ok", "https://up.test crawls this host (last seq 9)")
        );
        assert_eq!(
            level_of(&outcomes, "relay:https://unknown.test"),
            ("problem", "https://unknown.test does not know this host")
        );
        assert_eq!(
            level_of(&outcomes, "relay:https://throttled.test"),
            (
                "problem",
                "https://throttled.test has this host as throttled"
            )
        );
        assert_eq!(level_of(&outcomes, "relay:https://broken.test").0, "note");

        // Another PDS named, another key, a handle pointing elsewhere, nothing resolving.
        script[1].2 = document(&config, "https://elsewhere.example.com");
        let outcomes = run_with(script.clone());
        assert_eq!(
            level_of(&outcomes, "didDocument"),
            (
                "problem",
                "the DID document names https://elsewhere.example.com as the account's PDS"
            )
        );
        let mut other_key = document(&config, "https://pds.example.com");
        other_key["verificationMethod"][0]["publicKeyMultibase"] = serde_json::json!(
            crate::crypto::SigningKey::from_bytes(crate::crypto::KeyAlgorithm::K256, &[3; 32])
                .unwrap()
                .public_key()
                .to_multibase()
        );
        script[1].2 = other_key;
        script[0].2["Answer"][0]["data"] =
            serde_json::json!("\"did=did:plc:someoneelse0000000000000\"");
        let outcomes = run_with(script);
        assert_eq!(
            level_of(&outcomes, "didDocument"),
            (
                "problem",
                "the DID document does not name this PDS's signing key"
            )
        );
        let (level, summary) = level_of(&outcomes, "handle");
        assert_eq!(level, "problem");
        assert!(
            summary.contains("resolves to did:plc:someoneelse"),
            "{summary}"
        );
        let outcomes = run_with(Vec::new());
        assert!(outcomes.iter().all(|o| o.level != "ok"), "{outcomes:?}");
        assert!(outcomes
            .iter()
            .filter(|o| o.level == "problem")
            .all(|o| o.fix.is_some()));
    }
}
