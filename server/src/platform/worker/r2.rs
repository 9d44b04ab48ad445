//! The blob store port on R2.
//!
//! R2 cannot rename, and a blob's key (its CID) is known only once all its
//! bytes have been seen. Blobs up to one part (5 MiB, R2's minimum multipart
//! part size, inclusive) are buffered and written once under their CID. Larger
//! ones are streamed as a multipart upload to `large/<random>` (aborted on any
//! failure or once over the limit); once complete, an empty object under their
//! CID names that key in its metadata. Copying them would write every byte
//! twice. Either way nothing appears under a CID before the upload is complete.

use super::js;
use super::webcrypto::Sha256Stream;
use crate::storage::blobs::{
    BlobBody, BlobError, BlobStore, ByteRange, ChunkSource, LocalBoxFuture, StoredBlob,
};
use cid::Cid;
use worker::js_sys::{Array, Date, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Bucket, MultipartUpload, Range, ResponseBody, UploadedPart};

/// R2 multipart parts must all be the same size (except the last) and at
/// least 5 MiB.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Large blobs' bytes live under this prefix, at random names.
const LARGE_PREFIX: &str = "large/";

/// Where earlier versions streamed large uploads before copying them to their CID; only swept.
const TMP_PREFIX: &str = "tmp/";

/// The custom metadata entry of an empty object under a CID that names the key of its bytes.
const STORED_AT: &str = "stored-at";

/// What a head or a listing says of an object, read from the runtime's R2 object itself:
/// worker's `Object` copies custom metadata into a `HashMap`, which links a hash map for the
/// one string read here.
struct ObjectInfo {
    key: String,
    size: u64,
    uploaded_ms: f64,
    /// The key of the bytes, when this object is a pointer (see [`STORED_AT`]).
    stored_at: Option<String>,
}

impl ObjectInfo {
    fn of(object: &JsValue) -> Option<ObjectInfo> {
        let uploaded: Date = js::get(object, "uploaded").dyn_into().ok()?;
        Some(ObjectInfo {
            key: js::get(object, "key").as_string()?,
            size: js::get(object, "size").as_f64()? as u64,
            uploaded_ms: uploaded.get_time(),
            stored_at: js::get(&js::get(object, "customMetadata"), STORED_AT).as_string(),
        })
    }

    /// Whether the object was last written before `before_ms`.
    fn written_before(&self, before_ms: i64) -> bool {
        self.uploaded_ms < before_ms as f64
    }
}

fn js_error(thrown: JsValue) -> BlobError {
    BlobError::Store(js::message(&thrown))
}

/// The raw CID of what `digest` was fed.
async fn raw_cid(digest: Sha256Stream) -> Result<Cid, BlobError> {
    let digest = digest.finish().await.map_err(js_error)?;
    Ok(crate::data::cid_from_digest(crate::data::cid::RAW, &digest))
}

/// Fails once `total` bytes pass `max_size`.
fn check_size(total: usize, max_size: u64) -> Result<(), BlobError> {
    if total as u64 > max_size {
        return Err(BlobError::TooLarge { limit: max_size });
    }
    Ok(())
}

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

    /// `await bucket.method(...args)`.
    async fn call(&self, method: &str, args: &Array) -> Result<JsValue, BlobError> {
        js::call(self.bucket.as_ref(), method, args)
            .await
            .map_err(js_error)
    }

    /// The object under `key`, if any.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BlobError> {
        let object = self
            .call("head", &Array::of1(&JsValue::from_str(key)))
            .await?;
        if object.is_null() || object.is_undefined() {
            return Ok(None);
        }
        ObjectInfo::of(&object)
            .map(Some)
            .ok_or_else(|| BlobError::Store(format!("unreadable R2 head of {key}")))
    }

    /// Writes the pointer under `key` to the bytes at `target`.
    async fn put_pointer(&self, key: &str, target: &str) -> Result<(), BlobError> {
        let metadata = js::object(&[(STORED_AT, JsValue::from_str(target))]);
        let options = js::object(&[("customMetadata", metadata.into())]);
        let args = Array::of3(&JsValue::from_str(key), &JsValue::NULL, &options);
        self.call("put", &args).await.map(drop)
    }

    /// Deletes the objects under `prefix` that `remove` chooses (listed with their custom
    /// metadata), a listed page at a time; returns how many.
    async fn remove_where(
        &self,
        prefix: &str,
        remove: &mut dyn FnMut(&ObjectInfo) -> bool,
    ) -> Result<usize, BlobError> {
        let mut removed = 0;
        let mut cursor = JsValue::UNDEFINED;
        loop {
            let include = Array::of1(&JsValue::from_str("customMetadata"));
            let options = js::object(&[
                ("prefix", JsValue::from_str(prefix)),
                ("limit", JsValue::from_f64(1000.0)),
                ("include", include.into()),
                ("cursor", cursor),
            ]);
            let listed = self.call("list", &Array::of1(&options)).await?;
            let objects: Array = js::get(&listed, "objects")
                .dyn_into()
                .map_err(|_| BlobError::Store("unreadable R2 listing".into()))?;
            let mut keys = Vec::new();
            for object in objects.iter() {
                let info = ObjectInfo::of(&object)
                    .ok_or_else(|| BlobError::Store("unreadable R2 listing".into()))?;
                if remove(&info) {
                    keys.push(info.key);
                }
            }
            if !keys.is_empty() {
                self.bucket
                    .delete_multiple(keys.iter().map(String::as_str).collect())
                    .await
                    .map_err(r2)?;
                removed += keys.len();
            }
            cursor = js::get(&listed, "cursor");
            if js::get(&listed, "truncated").as_bool() != Some(true) || cursor.as_string().is_none()
            {
                return Ok(removed);
            }
        }
    }

    /// Streams `buffer`, `next` (together over one part) and the rest of `source` as a
    /// multipart upload.
    async fn put_large(
        &self,
        source: &mut dyn ChunkSource,
        max_size: u64,
        buffer: Vec<u8>,
        next: Vec<u8>,
    ) -> Result<StoredBlob, BlobError> {
        let mut random = [0u8; 16];
        getrandom02::getrandom(&mut random).map_err(|e| BlobError::Store(e.to_string()))?;
        let large_key = format!(
            "{LARGE_PREFIX}{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let upload = self
            .bucket
            .create_multipart_upload(large_key.clone())
            .execute()
            .await
            .map_err(r2)?;
        let mut parts = Vec::new();
        let digest = Sha256Stream::new().map_err(js_error)?;
        let size = match stream_parts(&upload, source, max_size, &digest, buffer, next, &mut parts)
            .await
        {
            Ok(size) => size,
            Err(e) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        upload.complete(parts).await.map_err(r2)?;
        let stored = StoredBlob {
            cid: raw_cid(digest).await?,
            size,
        };
        let key = crate::data::cid_string(&stored.cid);
        // Written even over a pointer from an earlier upload of the same bytes, as a small blob
        // is rewritten: the object under the CID is fresh for the sweep's age test either way,
        // and the bytes it named before, named by no pointer now, are swept a day later.
        if let Err(e) = self.put_pointer(&key, &large_key).await {
            let _ = self.bucket.delete(large_key).await;
            return Err(e);
        }
        Ok(stored)
    }
}

/// Feeds `buffer`, then `next`, then the rest of the source, into multipart parts of exactly
/// [`PART_SIZE`] (the last one shorter), each digested as it is written; returns the total
/// size. One part's buffer at a time, never more.
async fn stream_parts(
    upload: &MultipartUpload,
    source: &mut dyn ChunkSource,
    max_size: u64,
    digest: &Sha256Stream,
    mut buffer: Vec<u8>,
    next: Vec<u8>,
    parts: &mut Vec<UploadedPart>,
) -> Result<u64, BlobError> {
    buffer.reserve_exact(PART_SIZE.saturating_sub(buffer.len()));
    let mut size = buffer.len() + next.len();
    let mut pending = Some(next);
    loop {
        let chunk = match pending.take() {
            Some(chunk) => chunk,
            None => match source.next_chunk().await? {
                Some(chunk) => {
                    size += chunk.len();
                    check_size(size, max_size)?;
                    chunk
                }
                None => break,
            },
        };
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (into_part, after) = rest.split_at(rest.len().min(PART_SIZE - buffer.len()));
            buffer.extend_from_slice(into_part);
            rest = after;
            if buffer.len() == PART_SIZE {
                let part = std::mem::replace(&mut buffer, Vec::with_capacity(PART_SIZE));
                parts.push(write_part(upload, digest, part, parts.len()).await?);
            }
        }
    }
    if !buffer.is_empty() {
        parts.push(write_part(upload, digest, buffer, parts.len()).await?);
    }
    Ok(size as u64)
}

/// Digests and uploads the part after the `written` ones.
async fn write_part(
    upload: &MultipartUpload,
    digest: &Sha256Stream,
    part: Vec<u8>,
    written: usize,
) -> Result<UploadedPart, BlobError> {
    let number = u16::try_from(written + 1)
        .map_err(|_| BlobError::Store("too many multipart parts".into()))?;
    digest.update(&part).await.map_err(js_error)?;
    upload.upload_part(number, part).await.map_err(r2)
}

/// An R2 object body, read a block at a time with a BYOB reader: the runtime's stream gives
/// 4 KiB chunks, and each one carried into wasm and out again costs far more than its bytes.
struct R2Chunks {
    reader: JsValue,
    /// Whether the reader has workerd's `readAtLeast` (else `read`, which may fill less).
    at_least: bool,
    done: bool,
}

/// How much one read asks for, and the least it waits for before the end.
const READ_BLOCK: u32 = 1024 * 1024;
const READ_AT_LEAST: u32 = 256 * 1024;

impl R2Chunks {
    fn new(stream: &JsValue) -> Result<R2Chunks, BlobError> {
        let options = js::object(&[("mode", JsValue::from_str("byob"))]);
        let reader = js::call_sync(stream, "getReader", &Array::of1(&options)).map_err(js_error)?;
        let at_least = js::get(&reader, "readAtLeast").is_function();
        Ok(R2Chunks {
            reader,
            at_least,
            done: false,
        })
    }

    async fn read(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        if self.done {
            return Ok(None);
        }
        let view = Uint8Array::new_with_length(READ_BLOCK);
        let (method, args) = if self.at_least {
            let least = JsValue::from_f64(f64::from(READ_AT_LEAST));
            ("readAtLeast", Array::of2(&least, &view))
        } else {
            ("read", Array::of1(&view))
        };
        let result = js::call(&self.reader, method, &args)
            .await
            .map_err(js_error)?;
        self.done = js::get(&result, "done").as_bool() != Some(false);
        let bytes = js::get(&result, "value")
            .dyn_into::<Uint8Array>()
            .map(|v| v.to_vec())
            .unwrap_or_default();
        Ok((!bytes.is_empty()).then_some(bytes))
    }
}

impl ChunkSource for R2Chunks {
    fn next_chunk(&mut self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            // An empty block before the end is read past.
            loop {
                match self.read().await? {
                    Some(bytes) => return Ok(Some(bytes)),
                    None if self.done => return Ok(None),
                    None => continue,
                }
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
            // Hashed by the runtime (native code, several times faster than wasm): once the blob
            // fits one object, or a part at a time as a larger one is written.
            // Sized by the declared length, and never past one part: grown by doubling, a
            // 5 MiB buffer would reserve 8 MiB of wasm memory, which never shrinks.
            let declared = source.declared_len().unwrap_or(0).min(max_size);
            let mut buffer = Vec::with_capacity(declared.min(PART_SIZE as u64) as usize);
            while let Some(chunk) = source.next_chunk().await? {
                let needed = buffer.len() + chunk.len();
                check_size(needed, max_size)?;
                if needed > PART_SIZE {
                    return self.put_large(source, max_size, buffer, chunk).await;
                }
                if needed > buffer.capacity() {
                    let grown = (buffer.capacity() * 2).max(needed).min(PART_SIZE);
                    buffer.reserve_exact(grown - buffer.len());
                }
                buffer.extend_from_slice(&chunk);
            }
            let digest = Sha256Stream::new().map_err(js_error)?;
            digest.update(&buffer).await.map_err(js_error)?;
            let stored = StoredBlob {
                cid: raw_cid(digest).await?,
                size: buffer.len() as u64,
            };
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
            let Some(mut head) = self.head(&key).await? else {
                return Ok(None);
            };
            if let Some(large_key) = head.stored_at.take() {
                let Some(large) = self.head(&large_key).await? else {
                    return Ok(None);
                };
                head = large;
            }
            let size = head.size;
            let (start, end) = range
                .unwrap_or(ByteRange {
                    start: 0,
                    end: None,
                })
                .resolve(size)?;
            let mut request = self.bucket.get(head.key);
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
            let ResponseBody::Stream(stream) = body.response_body().map_err(r2)? else {
                return Err(BlobError::Store("R2 body is not a stream".into()));
            };
            Ok(Some(BlobBody {
                size,
                start,
                end,
                chunks: Box::new(R2Chunks::new(&stream)?),
            }))
        })
    }

    fn delete<'a>(&'a self, cid: &'a Cid) -> LocalBoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let key = crate::data::cid_string(cid);
            let head = self.head(&key).await?;
            // The pointer first: bytes it no longer names are swept if their delete fails.
            self.bucket.delete(key).await.map_err(r2)?;
            if let Some(large_key) = head.as_ref().and_then(|h| h.stored_at.clone()) {
                self.bucket.delete(large_key).await.map_err(r2)?;
            }
            Ok(head.is_some())
        })
    }

    fn remove_leftovers<'a>(
        &'a self,
        before_ms: i64,
        is_known: &'a dyn Fn(&Cid) -> bool,
    ) -> LocalBoxFuture<'a, Result<usize, BlobError>> {
        Box::pin(async move {
            // Multipart uploads never completed are aborted by R2 itself (after 7 days by
            // default). Under `tmp/` is what earlier versions completed and never copied.
            let temporary = self
                .remove_where(TMP_PREFIX, &mut |o| o.written_before(before_ms))
                .await?;
            // Blobs the account does not know go; the large bytes the others name stay.
            let mut named = std::collections::BTreeSet::new();
            let unknown = self
                .remove_where("b", &mut |o| {
                    let unknown = o.written_before(before_ms)
                        && crate::data::parse_cid(&o.key).is_ok_and(|cid| !is_known(&cid));
                    if !unknown {
                        named.extend(o.stored_at.clone());
                    }
                    unknown
                })
                .await?;
            // And large bytes no pointer names: a pointer never written, or one just removed.
            let unnamed = self
                .remove_where(LARGE_PREFIX, &mut |o| {
                    o.written_before(before_ms) && !named.contains(&o.key)
                })
                .await?;
            Ok(temporary + unknown + unnamed)
        })
    }

    fn list<'a>(
        &'a self,
        after: Option<&'a Cid>,
        limit: usize,
    ) -> LocalBoxFuture<'a, Result<Vec<Cid>, BlobError>> {
        Box::pin(async move {
            // Blob keys are base32 CIDv1 strings ("b..."); `large/` and `tmp/` are not listed.
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
