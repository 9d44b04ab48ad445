//! `pds export <dir>` and `pds import-backup <dir>`: a backup folder of the account, and its
//! restoration onto a fresh deployment of the same account.
//!
//! The folder:
//! - `manifest.json`: the account (`did`, `handle`), when it was exported, the repository's
//!   head (`commit`, `rev`), how many records and blobs, and the format's version;
//! - `repo.car`: the whole repository (`com.atproto.sync.getRepo`), checked against the key
//!   the account's DID document names;
//! - `blobs/<cid>`: every blob a record references, its bytes checked against its CID;
//! - `preferences.json`: the account's preferences (`app.bsky.actor.getPreferences`).
//!
//! An export into a folder that holds one already is incremental: the repository is fetched
//! again only if its head moved, and only blobs not already there (and sound) are fetched.

use std::path::{Path, PathBuf};

use super::Pds;

/// The manifest's `format`.
pub const FORMAT: &str = "rust-pds-backup/1";

/// What an export or a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Done {
    /// Whether the repository was written (or imported).
    pub repo: bool,
    /// Records in the repository.
    pub records: usize,
    /// Blobs written (or uploaded) by this run.
    pub blobs: usize,
    /// Blobs that were already there.
    pub blobs_kept: usize,
}

/// Exports the account `pds` is signed in to into `dir`.
pub async fn export(pds: &Pds, identifier: &str, dir: &Path) -> Result<Done, String> {
    std::fs::create_dir_all(dir.join("blobs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let described = pds
        .query_with("com.atproto.repo.describeRepo", &[("repo", identifier)])
        .await;
    let session = pds.query("com.atproto.server.getSession").await?;
    let did = session["did"]
        .as_str()
        .ok_or("getSession named no DID")?
        .to_owned();
    let handle = session["handle"].as_str().unwrap_or_default().to_owned();
    let latest = pds
        .query_with("com.atproto.sync.getLatestCommit", &[("did", &did)])
        .await?;
    let commit = latest["cid"].as_str().ok_or("no head commit")?.to_owned();
    let rev = latest["rev"].as_str().unwrap_or_default().to_owned();
    let previous = read_manifest(dir).ok();
    let mut done = Done::default();

    let car_path = dir.join("repo.car");
    let unchanged = previous
        .as_ref()
        .is_some_and(|m| m["commit"] == commit.as_str() && m["did"] == did.as_str())
        && car_path.exists();
    if !unchanged {
        let (car, _) = fetch(pds, &format!("com.atproto.sync.getRepo?did={did}")).await?;
        write_atomically(&car_path, &car)?;
        done.repo = true;
    }
    // Checked whether written now or before: the repository as the DID document's key signed it.
    let car = std::fs::read(&car_path).map_err(|e| format!("{}: {e}", car_path.display()))?;
    let key = described
        .ok()
        .and_then(|d| super::atproto_key(&d["didDoc"]))
        .or_else(|| super::atproto_key(&session["didDoc"]));
    let verified = match key {
        Some(key) => crate::repo::verify::verify_car_with_did_key(car.as_slice(), &key, Some(&did))
            .map_err(|e| format!("repo.car does not verify: {e}"))?,
        None => {
            return Err("the account's DID document names no #atproto key to check with".into())
        }
    };
    if crate::data::cid_string(&verified.commit_cid) != commit {
        return Err(format!(
            "repo.car's head is {}, not the account's {commit}",
            verified.commit_cid
        ));
    }
    done.records = verified.records.len();

    // Blob types, as the PDS serves them (kept in the manifest: the files hold bytes only).
    let mut types = previous
        .as_ref()
        .and_then(|m| m["blobTypes"].as_object().cloned())
        .unwrap_or_default();
    for cid in pds.list_blobs(&did).await? {
        let path = dir.join("blobs").join(&cid);
        if blob_is_sound(&path, &cid) && types.contains_key(&cid) {
            done.blobs_kept += 1;
            continue;
        }
        let (bytes, kind) = fetch(
            pds,
            &format!("com.atproto.sync.getBlob?did={did}&cid={cid}"),
        )
        .await?;
        if crate::data::cid_string(&crate::data::cid_for_raw(&bytes)) != cid {
            return Err(format!("blob {cid}: the PDS sent other bytes"));
        }
        write_atomically(&path, &bytes)?;
        types.insert(cid, kind.into());
        done.blobs += 1;
    }

    let prefs = pds.query("app.bsky.actor.getPreferences").await?;
    write_atomically(
        &dir.join("preferences.json"),
        serde_json::to_string_pretty(&prefs)
            .map_err(|e| e.to_string())?
            .as_bytes(),
    )?;
    let manifest = serde_json::json!({
        "format": FORMAT,
        "did": did,
        "handle": handle,
        "exportedAt": pds_api::runtime::syntax::Datetime::from_unix_micros(
            crate::clock::Clock::now_micros(&crate::clock::SystemClock)
        )
        .as_str(),
        "commit": commit,
        "rev": rev,
        "records": done.records,
        "blobs": done.blobs + done.blobs_kept,
        "blobTypes": types,
    });
    write_atomically(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)
            .map_err(|e| e.to_string())?
            .as_bytes(),
    )?;
    Ok(done)
}

/// Restores the backup in `dir` onto the account `pds` is signed in to (a fresh deployment of
/// the same DID): the repository (the account deactivated for it, as an import requires), the
/// blobs its records reference, the preferences; then the account is active again.
pub async fn restore(pds: &Pds, dir: &Path) -> Result<Done, String> {
    let manifest = read_manifest(dir)?;
    if manifest["format"] != FORMAT {
        return Err(format!("{}: not a backup this tool wrote", dir.display()));
    }
    let session = pds.query("com.atproto.server.getSession").await?;
    if session["did"] != manifest["did"] {
        return Err(format!(
            "the backup is of {}, this PDS's account is {}",
            manifest["did"], session["did"]
        ));
    }
    let mut done = Done::default();
    if session["active"] != false {
        pds.procedure(
            "com.atproto.server.deactivateAccount",
            serde_json::json!({}),
        )
        .await?;
    }
    let car = std::fs::read(dir.join("repo.car")).map_err(|e| format!("repo.car: {e}"))?;
    send(
        pds,
        "com.atproto.repo.importRepo",
        "application/vnd.ipld.car",
        car,
    )
    .await?;
    done.repo = true;
    let status = pds.query("com.atproto.server.checkAccountStatus").await?;
    done.records = status["indexedRecords"].as_u64().unwrap_or(0) as usize;
    loop {
        let missing = pds
            .query_with("com.atproto.repo.listMissingBlobs", &[("limit", "500")])
            .await?;
        let cids: Vec<String> = missing["blobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["cid"].as_str().map(str::to_owned))
            .collect();
        if cids.is_empty() {
            break;
        }
        let before = done.blobs;
        for cid in cids {
            let path = dir.join("blobs").join(&cid);
            if !blob_is_sound(&path, &cid) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mime = manifest["blobTypes"][&cid]
                .as_str()
                .unwrap_or("application/octet-stream");
            send(pds, "com.atproto.repo.uploadBlob", mime, bytes).await?;
            done.blobs += 1;
        }
        if done.blobs == before {
            break;
        }
    }
    let prefs_path = dir.join("preferences.json");
    if let Ok(text) = std::fs::read_to_string(&prefs_path) {
        let prefs: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("preferences.json: {e}"))?;
        pds.procedure("app.bsky.actor.putPreferences", prefs)
            .await?;
    }
    pds.procedure_without_input("com.atproto.server.activateAccount")
        .await?;
    let status = pds.query("com.atproto.server.checkAccountStatus").await?;
    if status["importedBlobs"] != status["expectedBlobs"] {
        return Err(format!(
            "restored, but {} of {} blobs are missing from the backup",
            status["expectedBlobs"].as_u64().unwrap_or(0)
                - status["importedBlobs"].as_u64().unwrap_or(0),
            status["expectedBlobs"]
        ));
    }
    Ok(done)
}

fn read_manifest(dir: &Path) -> Result<serde_json::Value, String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `path` holds the bytes of blob `cid`.
fn blob_is_sound(path: &Path, cid: &str) -> bool {
    std::fs::read(path)
        .is_ok_and(|bytes| crate::data::cid_string(&crate::data::cid_for_raw(&bytes)) == cid)
}

/// Writes `bytes` to `path` through a temporary file, so a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = PathBuf::from(format!("{}.part", path.display()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// GETs `/xrpc/<path_and_query>` with the session; the body and its type.
async fn fetch(pds: &Pds, path_and_query: &str) -> Result<(Vec<u8>, String), String> {
    let url = format!("{}/xrpc/{path_and_query}", pds.base());
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = pds.access_token() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if status != 200 {
        return Err(format!(
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok((body.to_vec(), kind))
}

/// POSTs `body` to procedure `nsid` with the session.
async fn send(pds: &Pds, nsid: &str, content_type: &str, body: Vec<u8>) -> Result<(), String> {
    let url = format!("{}/xrpc/{nsid}", pds.base());
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(pds.access_token().unwrap_or_default())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{nsid}: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{nsid}: {status} {text}"));
    }
    Ok(())
}
