//! The blob store port on R2.
//!
//! R2 cannot rename, and a blob's key (its CID) is known only once all its
//! bytes have been seen. Blobs up to one part (5 MiB, R2's minimum multipart
//! part size) are buffered and written once under their CID. Larger ones are
//! streamed as a multipart upload to `tmp/<random>` (aborted on any failure
//! or once over the limit), then copied to their CID as a stream and the
//! temporary object deleted. Either way nothing appears under a CID before
//! the upload is complete.

use crate::storage::blobs::{
    BlobBody, BlobError, BlobStore, ByteRange, ChunkSource, LocalBoxFuture, StoredBlob, UploadMeter,
};
use cid::Cid;
use futures_util::StreamExt;
use worker::{Bucket, ByteStream, Data, MultipartUpload, Range, ResponseBody, UploadedPart};

/// R2 multipart parts must all be the same size (except the last) and at
/// least 5 MiB.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Temporary objects of large uploads live under this prefix.
const TMP_PREFIX: &str = "tmp/";

fn r2(e: worker::Error) -> BlobError {
    BlobError::Store(e.to_string())
}

/// Blobs in an R2 bucket, keyed by CID string.
pub struct R2BlobStore {
    bucket: Bucket,
}

impl R2BlobStore {
    /// Blobs in `bucket` (the `BLOBS` binding).
    pub fn new(bucket: Bucket) -> R2BlobStore {
        R2BlobStore { bucket }
    }

    /// Deletes the objects under `prefix` last written before `before_ms` that `remove`
    /// chooses, a listed page at a time; returns how many.
    async fn remove_where(
        &self,
        prefix: &str,
        before_ms: i64,
        remove: &dyn Fn(&str) -> bool,
    ) -> Result<usize, BlobError> {
        let mut removed = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut request = self.bucket.list().prefix(prefix).limit(1000);
            if let Some(cursor) = cursor.take() {
                request = request.cursor(cursor);
            }
            let listed = request.execute().await.map_err(r2)?;
            let keys: Vec<String> = listed
                .objects()
                .iter()
                .filter(|o| i64::try_from(o.uploaded().as_millis()).is_ok_and(|t| t < before_ms))
                .map(|o| o.key())
                .filter(|key| remove(key))
                .collect();
            if !keys.is_empty() {
                self.bucket
                    .delete_multiple(keys.iter().map(String::as_str).collect())
                    .await
                    .map_err(r2)?;
                removed += keys.len();
            }
            match listed.cursor().filter(|_| listed.truncated()) {
                Some(next) => cursor = Some(next),
                None => return Ok(removed),
            }
        }
    }

    async fn put_large(
        &self,
        source: &mut dyn ChunkSource,
        max_size: u64,
        mut meter: UploadMeter,
        mut buffer: Vec<u8>,
    ) -> Result<StoredBlob, BlobError> {
        let mut random = [0u8; 16];
        getrandom02::getrandom(&mut random).map_err(|e| BlobError::Store(e.to_string()))?;
        let tmp_key = format!(
            "{TMP_PREFIX}{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let upload = self
            .bucket
            .create_multipart_upload(tmp_key.clone())
            .execute()
            .await
            .map_err(r2)?;
        let mut parts = Vec::new();
        let streamed = stream_parts(
            &upload,
            source,
            max_size,
            &mut meter,
            &mut buffer,
            &mut parts,
        )
        .await;
        if let Err(e) = streamed {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.complete(parts).await.map_err(r2)?;
        let stored = meter.finish();
        let copied = self
            .copy(&tmp_key, &crate::data::cid_string(&stored.cid))
            .await;
        let _ = self.bucket.delete(tmp_key).await;
        copied.map(|()| stored)
    }

    /// Copies an object as a stream (R2 has no server-side copy).
    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        let object = self
            .bucket
            .get(from)
            .execute()
            .await
            .map_err(r2)?
            .ok_or_else(|| BlobError::Store(format!("{from} vanished during upload")))?;
        let body = object
            .body()
            .ok_or_else(|| BlobError::Store(format!("{from} has no body")))?;
        let data = match body.response_body().map_err(r2)? {
            ResponseBody::Stream(stream) => Data::ReadableStream(stream),
            ResponseBody::Body(bytes) => Data::Bytes(bytes),
            ResponseBody::Empty => Data::Empty,
        };
        self.bucket.put(to, data).execute().await.map_err(r2)?;
        Ok(())
    }
}

/// Feeds the source into multipart parts of exactly [`PART_SIZE`] (the last
/// one shorter).
async fn stream_parts(
    upload: &MultipartUpload,
    source: &mut dyn ChunkSource,
    max_size: u64,
    meter: &mut UploadMeter,
    buffer: &mut Vec<u8>,
    parts: &mut Vec<UploadedPart>,
) -> Result<(), BlobError> {
    let flush = |part: Vec<u8>, parts_len: usize| {
        let number = u16::try_from(parts_len + 1)
            .map_err(|_| BlobError::Store("too many multipart parts".into()));
        async move { upload.upload_part(number?, part).await.map_err(r2) }
    };
    loop {
        while buffer.len() >= PART_SIZE {
            let rest = buffer.split_off(PART_SIZE);
            let part = std::mem::replace(buffer, rest);
            let uploaded = flush(part, parts.len()).await?;
            parts.push(uploaded);
        }
        match source.next_chunk().await? {
            Some(chunk) => {
                meter.update(&chunk, max_size)?;
                buffer.extend_from_slice(&chunk);
            }
            None => break,
        }
    }
    if !buffer.is_empty() {
        let uploaded = flush(std::mem::take(buffer), parts.len()).await?;
        parts.push(uploaded);
    }
    Ok(())
}

/// An R2 object body, in chunks.
struct R2Chunks(ByteStream);

impl ChunkSource for R2Chunks {
    fn next_chunk(&mut self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            match self.0.next().await {
                Some(Ok(chunk)) => Ok(Some(chunk)),
                Some(Err(e)) => Err(r2(e)),
                None => Ok(None),
            }
        })
    }
}

impl BlobStore for R2BlobStore {
    fn put<'a>(
        &'a self,
        source: &'a mut dyn ChunkSource,
        max_size: u64,
    ) -> LocalBoxFuture<'a, Result<StoredBlob, BlobError>> {
        Box::pin(async move {
            let mut meter = UploadMeter::new();
            let mut buffer = Vec::new();
            while let Some(chunk) = source.next_chunk().await? {
                meter.update(&chunk, max_size)?;
                buffer.extend_from_slice(&chunk);
                if buffer.len() >= PART_SIZE {
                    return self.put_large(source, max_size, meter, buffer).await;
                }
            }
            let stored = meter.finish();
            self.bucket
                .put(crate::data::cid_string(&stored.cid), buffer)
                .execute()
                .await
                .map_err(r2)?;
            Ok(stored)
        })
    }

    fn get<'a>(
        &'a self,
        cid: &'a Cid,
        range: Option<ByteRange>,
    ) -> LocalBoxFuture<'a, Result<Option<BlobBody>, BlobError>> {
        Box::pin(async move {
            let key = crate::data::cid_string(cid);
            let Some(head) = self.bucket.head(key.clone()).await.map_err(r2)? else {
                return Ok(None);
            };
            let size = head.size();
            let (start, end) = range
                .unwrap_or(ByteRange {
                    start: 0,
                    end: None,
                })
                .resolve(size)?;
            let mut request = self.bucket.get(key);
            if (start, end) != (0, size) {
                request = request.range(Range::OffsetWithLength {
                    offset: start,
                    length: end - start,
                });
            }
            // Deleted between head and get: not found.
            let Some(object) = request.execute().await.map_err(r2)? else {
                return Ok(None);
            };
            let body = object
                .body()
                .ok_or_else(|| BlobError::Store("object without body".into()))?;
            Ok(Some(BlobBody {
                size,
                start,
                end,
                chunks: Box::new(R2Chunks(body.stream().map_err(r2)?)),
            }))
        })
    }

    fn delete<'a>(&'a self, cid: &'a Cid) -> LocalBoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let key = crate::data::cid_string(cid);
            let existed = self.bucket.head(key.clone()).await.map_err(r2)?.is_some();
            self.bucket.delete(key).await.map_err(r2)?;
            Ok(existed)
        })
    }

    fn remove_leftovers<'a>(
        &'a self,
        before_ms: i64,
        is_known: &'a dyn Fn(&Cid) -> bool,
    ) -> LocalBoxFuture<'a, Result<usize, BlobError>> {
        Box::pin(async move {
            // Multipart uploads never completed are aborted by R2 itself (after 7 days by
            // default); what is listed under `tmp/` is a completed part never copied.
            let temporary = self.remove_where(TMP_PREFIX, before_ms, &|_| true).await?;
            let unknown = self
                .remove_where("b", before_ms, &|key| {
                    crate::data::parse_cid(key).is_ok_and(|cid| !is_known(&cid))
                })
                .await?;
            Ok(temporary + unknown)
        })
    }

    fn list<'a>(
        &'a self,
        after: Option<&'a Cid>,
        limit: usize,
    ) -> LocalBoxFuture<'a, Result<Vec<Cid>, BlobError>> {
        Box::pin(async move {
            // Blob keys are base32 CIDv1 strings ("b..."); `tmp/` is not listed.
            let mut request = self
                .bucket
                .list()
                .prefix("b")
                .limit(u32::try_from(limit.min(1000)).unwrap_or(1000));
            if let Some(after) = after {
                request = request.start_after(crate::data::cid_string(after));
            }
            let listed = request.execute().await.map_err(r2)?;
            Ok(listed
                .objects()
                .iter()
                .filter_map(|o| crate::data::parse_cid(&o.key()).ok())
                .collect())
        })
    }
}
