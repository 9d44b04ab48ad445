//! `com.atproto.sync`: the account's repository, records, blocks and blobs for anyone who asks
//! (relays, AppViews, migrating clients). Public like the reference PDS; a deactivated,
//! suspended or taken-down account is hidden except from itself.

use std::rc::Rc;

use cid::Cid;
use pds_api::com::atproto::sync::{
    get_blob, get_blocks, get_latest_commit, get_record, get_repo, get_repo_status, list_blobs,
    list_repos, ComAtprotoSync,
};
use pds_api::runtime::lex::{CidString, Tid};
use pds_api::runtime::xrpc::{BinaryOutput, Body, ByteStream, XrpcError};

use super::{Api, RequestContext};
use crate::api::internal;
use crate::auth::{AccountStatus, AuthStore, SqlAuthStore};
use crate::data::json::{JsonMessage, JsonObject, JsonWriter};
use crate::first_error::FirstError;
use crate::repo::car::{block_bytes, header_bytes};
use crate::repo::{BlockStore, Repo};
use crate::storage::{load_root, ByteRange, ChunkSource, Sql, SqlBlockStore, SqlValue};

/// Content type of every CAR this namespace returns.
const CAR_MIME: &str = "application/vnd.ipld.car";
/// Blocks read per SQL page while exporting a CAR: bounds the memory of one step.
const EXPORT_PAGE: i64 = 500;
/// listBlobs page size bounds, as in the lexicon.
const LIST_BLOBS_MAX: i64 = 1000;

/// The reference's message for any DID this server does not host.
fn repo_not_found(did: &str) -> XrpcError {
    XrpcError::declared(
        "RepoNotFound",
        format!("Could not find repo for DID: {did}"),
    )
}

impl Api<'_> {
    /// The account's status, or RepoNotFound when `did` is not the account.
    fn hosted_status(&self, did: &str) -> Result<AccountStatus, XrpcError> {
        if did != self.config.did.as_str() {
            return Err(repo_not_found(did));
        }
        let store = SqlAuthStore::new(self.account.sql.as_ref(), self.config.did.as_str());
        let state = store.account_state().map_err(|e| internal(e.0))?;
        Ok(state.status)
    }

    /// The reference's `assertRepoAvailability`: the repository is readable unless the account
    /// is not active, in which case only the account itself may read it.
    fn assert_available(&self, cx: &RequestContext, did: &str) -> Result<(), XrpcError> {
        let status = self.hosted_status(did)?;
        if cx.caller.did() == Some(self.config.did.as_str()) {
            return Ok(());
        }
        let (name, word) = match status {
            AccountStatus::Active => return Ok(()),
            AccountStatus::Takendown => ("RepoTakendown", "takendown"),
            AccountStatus::Suspended => ("RepoSuspended", "suspended"),
            AccountStatus::Deactivated => ("RepoDeactivated", "deactivated"),
            AccountStatus::Deleted => return Err(repo_not_found(did)),
            // Not stored states: a repository marked so is served.
            AccountStatus::Desynchronized | AccountStatus::Throttled => return Ok(()),
        };
        Err(XrpcError::declared(
            name,
            format!("Repo has been {word}: {did}"),
        ))
    }
}

/// The wire form of a status that is not `active` (getRepoStatus, listRepos).
fn inactive_status(status: AccountStatus) -> Option<&'static str> {
    match status {
        AccountStatus::Active => None,
        other => Some(other.as_str()),
    }
}

fn cid_string(cid: &Cid) -> Result<CidString, XrpcError> {
    CidString::new(crate::data::cid_string(cid)).map_err(internal)
}

fn tid(rev: &str) -> Result<Tid, XrpcError> {
    Tid::new(rev.to_owned()).map_err(internal)
}

/// A CAR of stored repository blocks, produced one SQL page at a time: the header naming
/// `root`, then every block in `repo_block` (only those written after `since` when given).
/// Storage keeps exactly the blocks reachable from the head, so the unfiltered export is the
/// whole current repository. Holds one page of blocks at a time, never the repository.
pub struct CarPages {
    root: Cid,
    since: String,
    /// The last CID emitted (pages continue after it); `None` before the header.
    after: Option<String>,
    done: bool,
}

impl CarPages {
    /// An export of the repository at `root`, optionally only blocks of revisions after `since`.
    pub fn new(root: Cid, since: Option<&str>) -> Self {
        CarPages {
            root,
            since: since.unwrap_or("").to_owned(),
            after: None,
            done: false,
        }
    }

    /// The next chunk of the CAR (the header first, then one page of blocks), or `None` at the
    /// end.
    pub fn next_chunk(&mut self, db: &dyn Sql) -> Result<Option<Vec<u8>>, XrpcError> {
        if self.done {
            return Ok(None);
        }
        let Some(after) = &self.after else {
            self.after = Some(String::new());
            return header_bytes(&self.root).map(Some).map_err(internal);
        };
        let rows = db
            .execute(
                "SELECT cid, bytes FROM repo_block WHERE cid > ? AND rev > ? ORDER BY cid LIMIT ?",
                &[
                    SqlValue::from(after.as_str()),
                    SqlValue::from(self.since.as_str()),
                    SqlValue::Integer(EXPORT_PAGE),
                ],
            )
            .map_err(internal)?;
        if (rows.len() as i64) < EXPORT_PAGE {
            self.done = true;
        }
        let mut out = Vec::new();
        let mut last = None;
        for row in &rows {
            let text = row.text(0).map_err(internal)?;
            let cid = crate::data::parse_cid(&text)
                .map_err(|e| internal(format!("stored CID {text:?}: {e}")))?;
            out.extend_from_slice(&block_bytes(&cid, &row.blob(1).map_err(internal)?));
            last = Some(text);
        }
        match last {
            Some(last) => {
                self.after = Some(last);
                Ok(Some(out))
            }
            None => Ok(None),
        }
    }
}

/// A CAR of exactly `blocks`, rooted at `root`.
fn car_of(root: &Cid, blocks: &crate::repo::BlockMap) -> Result<Vec<u8>, XrpcError> {
    let mut out = header_bytes(root).map_err(internal)?;
    for (cid, bytes) in blocks {
        out.extend_from_slice(&block_bytes(cid, bytes));
    }
    Ok(out)
}

/// The 416 answer to a Range no byte of a `size`-byte blob satisfies: an XRPC error body plus
/// the `Content-Range: bytes */size` HTTP requires (which an `XrpcError` cannot carry).
fn unsatisfiable_range(size: u64) -> BinaryOutput {
    let error = serde_json::json!({
        "error": "InvalidRange",
        "message": format!("Range not satisfiable (blob is {size} bytes)"),
    });
    BinaryOutput {
        status: 416,
        content_type: "application/json; charset=utf-8".to_owned(),
        headers: vec![("content-range".to_owned(), format!("bytes */{size}"))],
        body: Body::Bytes(error.to_string().into_bytes()),
    }
}

/// The header that lets caches (the Worker's among them, see `PDS_EDGE_CACHE_SECONDS`) keep an
/// answer for `seconds`; none for 0.
fn cache_control(seconds: u64) -> Option<(String, String)> {
    (seconds > 0).then(|| {
        (
            "cache-control".to_owned(),
            format!("public, max-age={seconds}"),
        )
    })
}

fn car_output(bytes: Vec<u8>) -> BinaryOutput {
    BinaryOutput::new(CAR_MIME, Body::Bytes(bytes))
}

/// Parses a single-range `Range: bytes=...` header (`a-b`, `a-`, `-n`). `Ok(None)` means the
/// header is to be ignored (absent, another unit, several ranges), as HTTP allows.
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    // A malformed number makes the whole header ignorable, as HTTP says.
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // Suffix: the last n bytes.
        (true, false) => {
            let Some(n) = num(last) else {
                return Ok(None);
            };
            if n == 0 {
                return Err(());
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: None,
            }
        }
        (false, true) => match num(first) {
            Some(start) => ByteRange { start, end: None },
            None => return Ok(None),
        },
        (false, false) => {
            let (Some(start), Some(last)) = (num(first), num(last)) else {
                return Ok(None);
            };
            if last < start {
                return Ok(None);
            }
            ByteRange {
                start,
                end: Some(last.saturating_add(1)),
            }
        }
        (true, true) => return Ok(None),
    };
    if range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// A blob's chunks as a response body stream (the source owns the store's reader).
fn chunk_stream(source: Box<dyn ChunkSource>) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        Some(source),
        |state| async move {
            let mut source = state?;
            match source.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(source))),
                Ok(None) => None,
                Err(e) => Some((Err(internal(e)), None)),
            }
        },
    ))
}

impl ComAtprotoSync for Api<'_> {
    const SERVES_GET_REPO: bool = true;
    const SERVES_GET_RECORD: bool = true;
    const SERVES_GET_BLOCKS: bool = true;
    const SERVES_GET_LATEST_COMMIT: bool = true;
    const SERVES_GET_REPO_STATUS: bool = true;
    const SERVES_LIST_REPOS: bool = true;
    const SERVES_LIST_BLOBS: bool = true;
    const SERVES_GET_BLOB: bool = true;

    async fn get_repo(
        &self,
        cx: &RequestContext,
        params: get_repo::Params,
    ) -> Result<BinaryOutput, XrpcError> {
        self.assert_available(cx, params.did.as_str())?;
        let root = self.account.head(self.config)?;
        let pages = CarPages::new(root.commit_cid, params.since.as_ref().map(|t| t.as_str()));
        let sql = Rc::clone(&self.account.sql);
        let head = root.commit_cid;
        // One page of blocks per poll: the export never sits in memory whole.
        let stream = futures_util::stream::unfold(Some(pages), move |state| {
            let sql = Rc::clone(&sql);
            async move {
                let mut pages = state?;
                // Other requests run between pages; a commit may delete blocks this export still
                // needs. Stop with an error rather than send a repository that never existed.
                match load_root(sql.as_ref()) {
                    Ok(Some(now)) if now.commit_cid == head => {}
                    Ok(_) => {
                        return Some((
                            Err(XrpcError::internal_message(
                                "the repository changed during the export: retry",
                            )),
                            None,
                        ))
                    }
                    Err(e) => return Some((Err(internal(e)), None)),
                }
                match pages.next_chunk(sql.as_ref()) {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(pages))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        Ok(BinaryOutput::new(CAR_MIME, Body::Stream(Box::pin(stream))))
    }

    async fn get_record(
        &self,
        cx: &RequestContext,
        params: get_record::Params,
    ) -> Result<BinaryOutput, XrpcError> {
        self.assert_available(cx, params.did.as_str())?;
        let root = self.account.head(self.config)?;
        let store = SqlBlockStore::new(self.account.sql.as_ref());
        let repo = Repo::open(&store, root.commit_cid).map_err(internal)?;
        // A proof of absence is a proof too: the path to where the key would be.
        let blocks = repo
            .record_proof(&store, params.collection.as_str(), params.rkey.as_str())
            .map_err(internal)?;
        // Blocks never change: caches may keep them (for a while, as the account may be
        // deactivated).
        let mut output = car_output(car_of(&root.commit_cid, &blocks)?);
        output
            .headers
            .extend(cache_control(self.config.edge_cache_seconds));
        Ok(output)
    }

    async fn get_blocks(
        &self,
        cx: &RequestContext,
        params: get_blocks::Params,
    ) -> Result<BinaryOutput, XrpcError> {
        self.assert_available(cx, params.did.as_str())?;
        let root = self.account.head(self.config)?;
        let mut cids = Vec::with_capacity(params.cids.len());
        for c in &params.cids {
            let cid = crate::data::parse_cid(c.as_str())
                .map_err(|_| XrpcError::invalid_request(format!("Invalid CID: {}", c.as_str())))?;
            cids.push(cid);
        }
        let store = SqlBlockStore::new(self.account.sql.as_ref());
        let mut blocks = crate::repo::BlockMap::new();
        let mut missing = Vec::new();
        for cid in cids {
            match store.get(&cid).map_err(internal)? {
                Some(bytes) => {
                    blocks.insert(cid, bytes);
                }
                None => missing.push(crate::data::cid_string(&cid)),
            }
        }
        if !missing.is_empty() {
            return Err(XrpcError::declared(
                "BlockNotFound",
                format!("Could not find cids: {}", missing.join(",")),
            ));
        }
        // Blocks never change: caches may keep them (for a while, as the account may be
        // deactivated).
        let mut output = car_output(car_of(&root.commit_cid, &blocks)?);
        output
            .headers
            .extend(cache_control(self.config.edge_cache_seconds));
        Ok(output)
    }

    async fn get_latest_commit(
        &self,
        cx: &RequestContext,
        params: get_latest_commit::Params,
    ) -> Result<get_latest_commit::Output, XrpcError> {
        self.assert_available(cx, params.did.as_str())?;
        let root = self.account.head(self.config)?;
        Ok(get_latest_commit::Output {
            cid: cid_string(&root.commit_cid)?,
            rev: tid(&root.rev)?,
        })
    }

    async fn get_repo_status(
        &self,
        _cx: &RequestContext,
        params: get_repo_status::Params,
    ) -> Result<get_repo_status::Output, XrpcError> {
        let status = self.hosted_status(params.did.as_str())?;
        let active = status == AccountStatus::Active;
        // Like the reference, the revision is only reported for an active repository.
        let rev = if active {
            Some(tid(&self.account.head(self.config)?.rev)?)
        } else {
            None
        };
        Ok(get_repo_status::Output {
            active,
            did: params.did,
            rev,
            status: inactive_status(status)
                .map(|s| get_repo_status::OutputStatus::from(s.to_owned())),
        })
    }

    async fn list_repos(
        &self,
        _cx: &RequestContext,
        params: list_repos::Params,
    ) -> Result<list_repos::Output, XrpcError> {
        // One account: the cursor is its DID, after which nothing follows.
        if params.cursor.is_some() {
            return Ok(list_repos::Output {
                cursor: None,
                repos: Vec::new(),
            });
        }
        let status = self.hosted_status(self.config.did.as_str())?;
        let root = self.account.head(self.config)?;
        let repo = list_repos::Repo {
            active: Some(status == AccountStatus::Active),
            did: self.config.did.clone(),
            head: cid_string(&root.commit_cid)?,
            rev: tid(&root.rev)?,
            status: inactive_status(status).map(|s| list_repos::RepoStatus::from(s.to_owned())),
        };
        Ok(list_repos::Output {
            cursor: Some(self.config.did.as_str().to_owned()),
            repos: vec![repo],
        })
    }

    async fn list_blobs(
        &self,
        cx: &RequestContext,
        params: list_blobs::Params,
    ) -> Result<list_blobs::Output, XrpcError> {
        self.assert_available(cx, params.did.as_str())?;
        let limit = params.limit.clamp(1, LIST_BLOBS_MAX) as u32;
        let cids = crate::storage::blobs::list_referenced_blobs(
            self.account.sql.as_ref(),
            params.since.as_ref().map(|t| t.as_str()),
            params.cursor.as_deref(),
            limit,
        )
        .map_err(internal)?;
        let cursor = if cids.len() as u32 == limit {
            cids.last().map(crate::data::cid_string)
        } else {
            None
        };
        Ok(list_blobs::Output {
            cids: cids.iter().map(cid_string).collect::<Result<_, _>>()?,
            cursor,
        })
    }

    async fn get_blob(
        &self,
        cx: &RequestContext,
        params: get_blob::Params,
    ) -> Result<BinaryOutput, XrpcError> {
        let blob = self.blob_to_serve(cx, &params)?;
        serve_blob(self.account.blobs.as_ref(), &blob).await
    }
}

/// What getBlob serves, as the account decides it: which blob, its type and size, and the
/// bytes asked for. The edge carries it out (see [`crate::offload`]), so that blob bytes never
/// pass through the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobToServe {
    /// The blob's raw CID.
    pub cid: String,
    /// Its stored MIME type.
    pub mime_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The byte range asked for (`None`: the whole blob).
    pub range: Option<(u64, Option<u64>)>,
    /// Whether the range asked for lies outside the blob (answered 416).
    pub unsatisfiable: bool,
    /// How long caches may keep the whole blob (0: not at all): only a blob a record
    /// references, which is not garbage a little later.
    pub cache_seconds: u64,
}

impl JsonMessage for BlobToServe {
    fn write(&self) -> serde_json::Value {
        // The range as `[start, end]`, an open end as null.
        let range = self
            .range
            .map(|(start, end)| serde_json::json!([start, end]));
        JsonWriter::new()
            .str("cid", &self.cid)
            .str("mimeType", &self.mime_type)
            .u64("size", self.size)
            .opt_value("range", range)
            .bool("unsatisfiable", self.unsatisfiable)
            .u64("cacheSeconds", self.cache_seconds)
            .finish()
    }

    fn read(o: &JsonObject) -> Result<BlobToServe, String> {
        let range = match o.get("range") {
            None => None,
            Some(r) => {
                let bound = |i: usize| r.get(i).filter(|v| !v.is_null()).map(|v| v.as_u64());
                match (bound(0), bound(1)) {
                    (Some(Some(start)), None) => Some((start, None)),
                    (Some(Some(start)), Some(Some(end))) => Some((start, Some(end))),
                    _ => return Err("range must be [start, end]".into()),
                }
            }
        };
        let mut e = FirstError::new();
        let v = BlobToServe {
            cid: e.keep(o.str("cid")),
            mime_type: e.keep(o.str("mimeType")),
            size: e.keep(o.u64("size")),
            range,
            unsatisfiable: e.keep(o.flag("unsatisfiable")),
            cache_seconds: e.keep(o.opt_u64("cacheSeconds")).unwrap_or(0),
        };
        e.finish(v)
    }
}

impl Api<'_> {
    /// The account's decision on a getBlob call: the blob to serve, or the error to answer (the
    /// repository unavailable, a malformed CID, a blob unknown or past its grace window).
    pub(crate) fn blob_to_serve(
        &self,
        cx: &RequestContext,
        params: &get_blob::Params,
    ) -> Result<BlobToServe, XrpcError> {
        self.assert_available(cx, params.did.as_str())?;
        let not_found = || XrpcError::declared("BlobNotFound", "Blob not found");
        let cid = crate::data::parse_cid(params.cid.as_str())
            .map_err(|_| XrpcError::invalid_request("Invalid CID"))?;
        let Some(meta) = crate::storage::blobs::blob_metadata(self.account.sql.as_ref(), &cid)
            .map_err(internal)?
        else {
            return Err(not_found());
        };
        // Past its grace window with no record using it, a blob is garbage awaiting deletion.
        let now_ms = crate::maintenance::now_ms(self.account);
        if !meta.is_live(now_ms, self.config.blob_grace_ms()) {
            return Err(not_found());
        }
        let range = parse_range(cx.range.as_deref(), meta.size);
        Ok(BlobToServe {
            cid: crate::data::cid_string(&cid),
            mime_type: meta.mime_type,
            size: meta.size,
            range: range.ok().flatten().map(|r| (r.start, r.end)),
            unsatisfiable: range.is_err(),
            // Kept no longer than the grace window: a blob whose last record goes is collected
            // only after the window, when no cache holds it any more.
            cache_seconds: if meta.unreferenced_since_ms.is_none() {
                self.config
                    .edge_cache_seconds
                    .min(self.config.blob_grace_seconds)
            } else {
                0
            },
        })
    }
}

/// getBlob's answer for `blob`, its bytes read from `blobs`.
pub(crate) async fn serve_blob(
    blobs: &dyn crate::storage::BlobStore,
    blob: &BlobToServe,
) -> Result<BinaryOutput, XrpcError> {
    if blob.unsatisfiable {
        return Ok(unsatisfiable_range(blob.size));
    }
    let cid = crate::data::parse_cid(&blob.cid).map_err(internal)?;
    let range = blob.range.map(|(start, end)| ByteRange { start, end });
    let Some(body) = blobs.get(&cid, range).await.map_err(internal)? else {
        return Err(XrpcError::declared("BlobNotFound", "Blob not found"));
    };
    let mut headers = vec![
        (
            "content-length".to_owned(),
            (body.end - body.start).to_string(),
        ),
        ("accept-ranges".to_owned(), "bytes".to_owned()),
        ("x-content-type-options".to_owned(), "nosniff".to_owned()),
        (
            "content-security-policy".to_owned(),
            "default-src 'none'; sandbox".to_owned(),
        ),
    ];
    // Media is shown where it is linked; anything else (HTML, SVG, PDF, archives) is only
    // ever downloaded, so a blob cannot act as a page of this host.
    if !is_inline_media(&blob.mime_type) {
        headers.push((
            "content-disposition".to_owned(),
            format!("attachment; filename=\"{}\"", blob.cid),
        ));
    }
    if range.is_none() {
        headers.extend(cache_control(blob.cache_seconds));
    }
    let status = if range.is_some() {
        // `Content-Range` names the last byte inclusively; parse_range only lets through
        // ranges that start inside a non-empty blob, so `end > start`.
        headers.push((
            "content-range".to_owned(),
            format!(
                "bytes {}-{}/{}",
                body.start,
                body.end.saturating_sub(1),
                body.size
            ),
        ));
        206
    } else {
        200
    };
    Ok(BinaryOutput {
        status,
        content_type: blob.mime_type.clone(),
        headers,
        body: Body::Stream(chunk_stream(body.chunks)),
    })
}

/// Whether a blob of `mime_type` is served inline: images (except SVG, which can carry
/// script), audio and video.
fn is_inline_media(mime_type: &str) -> bool {
    let mime = mime_type.trim().to_ascii_lowercase();
    let media = ["image/", "video/", "audio/"]
        .iter()
        .any(|prefix| mime.starts_with(prefix));
    media && !mime.starts_with("image/svg")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_blob_to_serve_survives_its_trip_to_the_edge() {
        use crate::data::json::{read_message, JsonMessage};
        for range in [None, Some((5, None)), Some((5, Some(9)))] {
            let blob = BlobToServe {
                cid: "bafkreiexample".into(),
                mime_type: "image/png".into(),
                size: 10,
                range,
                unsatisfiable: range.is_some(),
                cache_seconds: 60,
            };
            let text = blob.write().to_string();
            assert_eq!(read_message::<BlobToServe>(text.as_bytes()).unwrap(), blob);
        }
        assert!(read_message::<BlobToServe>(
            br#"{"cid":"c","mimeType":"m","size":1,"range":["x"]}"#
        )
        .is_err());
    }

    use super::*;

    #[test]
    fn only_media_is_served_inline() {
        for inline in [
            "image/png",
            "image/jpeg",
            "video/mp4",
            "audio/mpeg",
            "IMAGE/WEBP",
        ] {
            assert!(is_inline_media(inline), "{inline}");
        }
        for attachment in [
            "text/html",
            "image/svg+xml",
            "application/pdf",
            "application/octet-stream",
            "",
        ] {
            assert!(!is_inline_media(attachment), "{attachment}");
        }
    }
    use crate::data::{encode, Map, Value};
    use crate::repo::car::CarReader;
    use crate::repo::WriteOp;
    use crate::storage::repo_store::RecordBlobs;
    use crate::storage::{persist_commit, SqlExt};

    #[test]
    fn range_headers() {
        let r = |start, end| Ok(Some(ByteRange { start, end }));
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), r(0, Some(4)));
        assert_eq!(parse_range(Some("bytes=4-"), 10), r(4, None));
        assert_eq!(parse_range(Some("bytes=-3"), 10), r(7, None));
        assert_eq!(parse_range(Some("bytes=-30"), 10), r(0, None));
        // Ignored: other units, several ranges, inverted bounds, no bounds.
        assert_eq!(parse_range(Some("items=0-3"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=-"), 10), Ok(None));
        // Unsatisfiable: 416.
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-3"), 10), Ok(None));
    }

    /// A 20k-record repository exported page by page: the first chunk (the header) comes before
    /// any block is read, no chunk holds more than one page, and the chunks together are the
    /// whole repository.
    #[test]
    fn export_of_a_large_repository_is_paged() {
        let dev = crate::dev_account::DevAccount::generate(1, Some("alice.test"), None).unwrap();
        let config = dev.config().unwrap();
        let dir = std::env::temp_dir().join(format!("pds-sync-export-{}", std::process::id()));
        let account = crate::platform::native::open_account(&dir).unwrap();
        let db = account.sql.as_ref();
        let root = account.head(&config).unwrap();
        let store = SqlBlockStore::new(db);
        let repo = Repo::open(&store, root.commit_cid).unwrap();
        let writes: Vec<WriteOp> = (0..20_000)
            .map(|n| {
                let mut m = Map::new();
                m.insert("$type".into(), Value::String("app.bsky.feed.post".into()));
                m.insert("text".into(), Value::String(format!("post {n}")));
                WriteOp::Create {
                    collection: "app.bsky.feed.post".into(),
                    rkey: format!("3l{n:011}"),
                    record: encode(&Value::Map(m)),
                }
            })
            .collect();
        let rev = account.tids.borrow_mut().next(account.clock.as_ref());
        let (_, output) = repo
            .apply_writes(&store, &writes, &config.signing_key, rev.as_str())
            .unwrap();
        // A commit event carries at most 200 ops; a #sync event stands in for this one.
        let event = crate::firehose::sync_event(&output.new_blocks[&output.cid], 0).unwrap();
        persist_commit(db, &output, &RecordBlobs::new(), &event.new_event(0)).unwrap();
        let stored = db
            .query_opt("SELECT COUNT(*) FROM repo_block", &[])
            .unwrap()
            .unwrap()
            .integer(0)
            .unwrap();

        let mut pages = CarPages::new(output.cid, None);
        let header = pages.next_chunk(db).unwrap().unwrap();
        assert_eq!(header, header_bytes(&output.cid).unwrap());
        let mut car = header;
        let mut chunks = 0;
        let mut largest = 0;
        while let Some(chunk) = pages.next_chunk(db).unwrap() {
            let alone = [header_bytes(&output.cid).unwrap(), chunk.clone()].concat();
            let blocks = CarReader::new(alone.as_slice()).unwrap().count();
            assert!(blocks as i64 <= EXPORT_PAGE);
            largest = largest.max(chunk.len());
            chunks += 1;
            car.extend_from_slice(&chunk);
        }
        let mut reader = CarReader::new(car.as_slice()).unwrap();
        let mut blocks = 0;
        while reader.next_block().unwrap().is_some() {
            blocks += 1;
        }
        assert_eq!(blocks, stored);
        assert!(blocks > 20_000);
        assert!(chunks as i64 >= stored / EXPORT_PAGE);
        // One chunk is a small fraction of the export: memory is bounded by the page.
        assert!(largest * 20 < car.len(), "{largest} of {}", car.len());
        eprintln!(
            "export: {} bytes, {blocks} blocks in {chunks} chunks, largest chunk {largest} bytes",
            car.len()
        );
        drop(account);
        std::fs::remove_dir_all(&dir).ok();
    }
}
