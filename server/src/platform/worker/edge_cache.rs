//! Cloudflare's cache in front of the reads that never change: `sync.getBlob` and
//! `sync.getBlocks`, by CID, asked without credentials and whole (no `Range`). A hit costs no
//! Durable Object call and no R2 read. The account decides what may be kept, and for how long:
//! an answer with `Cache-Control: public, max-age=N` (blocks, and blobs a record references;
//! not a blob in its grace window, which may be garbage soon). A hit carries
//! `x-edge-cache: hit`.
//!
//! Cloudflare's cache is per data centre, and stores nothing on a `workers.dev` address (it
//! needs a custom domain); nothing purges an entry in every data centre at once. So entries
//! live at most `PDS_EDGE_CACHE_SECONDS` (default 300): that bounds how long a blob that was
//! collected, or a deactivated account's data, is still served. 0 turns the cache off.

use worker::{Cache, Context, Headers, Request, Response, Result};

/// Where a cacheable read lives in the cache.
pub struct EdgeCache {
    key: String,
}

impl EdgeCache {
    /// The entry `req` (`method` on `url`, its own) may be served from, if it is a cacheable
    /// read.
    pub fn of(req: &Request, method: &str, url: &str, ttl_seconds: u64) -> Option<EdgeCache> {
        let by_cid = matches!(
            crate::http::url_path_query(url).0,
            "/xrpc/com.atproto.sync.getBlob" | "/xrpc/com.atproto.sync.getBlocks"
        );
        if ttl_seconds == 0 || method != "GET" || !by_cid {
            return None;
        }
        // Reads with credentials (the owner's, while deactivated) or of a part are the
        // account's to answer each time.
        let headers = req.headers();
        if headers.has("authorization").unwrap_or(true) || headers.has("range").unwrap_or(true) {
            return None;
        }
        Some(EdgeCache {
            key: url.to_owned(),
        })
    }

    /// The cached answer, if there is one.
    pub async fn lookup(&self) -> Option<Response> {
        Cache::default()
            .get(self.key.as_str(), false)
            .await
            .ok()
            .flatten()
    }

    /// Keeps a copy of `response` if it is a success the account lets caches keep, written to
    /// the cache while the original goes to the client (after the answer, through `ctx`);
    /// returns the original.
    pub fn store(self, mut response: Response, ctx: &Context) -> Result<Response> {
        let public = response
            .headers()
            .get("cache-control")?
            .is_some_and(|c| c.starts_with("public"));
        if response.status_code() != 200 || !public {
            return Ok(response);
        }
        let copy = response.cloned()?;
        // The original's headers may be immutable (an answer of the Durable Object's): the copy
        // gets headers of its own.
        let headers = Headers::new();
        for (name, value) in copy.headers().entries() {
            headers.set(&name, &value)?;
        }
        headers.set("x-edge-cache", "hit")?;
        let (_, body) = copy.into_parts();
        let copy = Response::from_body(body)?.with_headers(headers);
        ctx.wait_until(async move {
            if let Err(e) = Cache::default().put(self.key.as_str(), copy).await {
                crate::log::error(&format!("edge cache: {e}"));
            }
        });
        Ok(response)
    }
}
