//! `pds status`: checks a deployment from outside, as the network sees it, with public reads
//! only (no password): the PDS answers; the account is active; its handle resolves to its DID
//! (as the PDS itself verifies it); its DID document names this PDS; the repository's head is
//! signed by the key the DID document names; its blobs; and the relays' view of the host
//! (`com.atproto.sync.getHostStatus`, where they serve it). Each problem comes with its fix.

use super::Pds;

/// One finding of [`status`].
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
    /// Wrong: the command exits non-zero.
    Problem,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }

    fn note(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Note,
            what: what.into(),
            fix: None,
        }
    }

    fn problem(what: impl Into<String>, fix: impl Into<String>) -> Finding {
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
}

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
            format!(
                "a DNS TXT record _atproto.{handle} with the value \"did={did}\", or \
                 https://{handle}/.well-known/atproto-did answering {did}"
            ),
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
    for relay in relays {
        found.push(relay_finding(relay, &host).await);
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

/// How `relay` sees `host`.
async fn relay_finding(relay: &str, host: &str) -> Finding {
    let base = if relay.contains("://") {
        relay.trim_end_matches('/').to_owned()
    } else {
        format!("https://{relay}")
    };
    let answer = async {
        let client = Pds::new(&base)?;
        client
            .query_with("com.atproto.sync.getHostStatus", &[("hostname", host)])
            .await
    }
    .await;
    match answer {
        Ok(status) => match status["status"].as_str() {
            Some("active") => Finding::ok(format!(
                "{base} crawls this host (last seq {})",
                status["seq"]
            )),
            Some(other) => Finding::problem(
                format!("{base} has this host as {other}"),
                format!(
                    "ask it to crawl: curl -X POST {base}/xrpc/com.atproto.sync.requestCrawl \
                     -H 'content-type: application/json' -d '{{\"hostname\":\"{host}\"}}'"
                ),
            ),
            None => Finding::note(format!("{base} answered getHostStatus without a status")),
        },
        Err(e) if super::is_error(&e, "HostNotFound") => Finding::problem(
            format!("{base} does not know this host"),
            format!(
                "ask it to crawl: curl -X POST {base}/xrpc/com.atproto.sync.requestCrawl \
                 -H 'content-type: application/json' -d '{{\"hostname\":\"{host}\"}}'"
            ),
        ),
        Err(e) => Finding::note(format!("{base} does not tell its view of this host: {e}")),
    }
}
