//! The blob store port on a directory: `<root>/<cid>` per blob, uploads
//! written to `<root>/tmp/` first and renamed into place once complete.

use crate::storage::blobs::{
    BlobBody, BlobError, BlobStore, ByteRange, ChunkSource, LocalBoxFuture, StoredBlob, UploadMeter,
};
use cid::Cid;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Chunk size of reads.
const READ_CHUNK: usize = 64 * 1024;

static UPLOAD_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Blobs as files in a directory.
pub struct DirBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Store(e.to_string())
}

impl DirBlobStore {
    /// Uses (creating if needed) the directory `root`.
    pub fn open(root: &Path) -> Result<DirBlobStore, BlobError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io)?;
        Ok(DirBlobStore {
            root: root.to_owned(),
            tmp,
        })
    }

    /// Removes uploads a killed process left half-written in `tmp/`. Only
    /// call when no upload is in progress (at start-up); returns how many.
    pub fn remove_stale_uploads(&self) -> Result<usize, BlobError> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp).map_err(io)? {
            fs::remove_file(entry.map_err(io)?.path()).map_err(io)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes the files of `dir` last modified before `before_ms` that `remove` chooses by
    /// name; returns how many.
    fn remove_where(
        dir: &Path,
        before_ms: i64,
        remove: &dyn Fn(&str) -> bool,
    ) -> Result<usize, BlobError> {
        let mut removed = 0;
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let meta = entry.metadata().map_err(io)?;
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let chosen = entry.file_name().to_str().is_some_and(remove);
            if meta.is_file() && modified_ms < before_ms && chosen {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    // Finished (renamed into place) or removed since it was listed.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                }
            }
        }
        Ok(removed)
    }

    fn path_of(&self, cid: &Cid) -> PathBuf {
        self.root.join(crate::data::cid_string(cid))
    }

    fn put_sync_part(
        &self,
        file: &mut File,
        meter: &mut UploadMeter,
        chunk: &[u8],
        max_size: u64,
    ) -> Result<(), BlobError> {
        meter.update(chunk, max_size)?;
        file.write_all(chunk).map_err(io)
    }

    fn read_range(
        &self,
        cid: &Cid,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobBody>, BlobError> {
        let mut file = match File::open(self.path_of(cid)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let size = file.metadata().map_err(io)?.len();
        let (start, end) = range
            .unwrap_or(ByteRange {
                start: 0,
                end: None,
            })
            .resolve(size)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        Ok(Some(BlobBody {
            size,
            start,
            end,
            chunks: Box::new(FileChunks {
                file,
                remaining: end - start,
            }),
        }))
    }
}

/// Reads a file range in chunks.
struct FileChunks {
    file: File,
    remaining: u64,
}

impl ChunkSource for FileChunks {
    fn next_chunk(&mut self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        let result = (|| {
            if self.remaining == 0 {
                return Ok(None);
            }
            let want = usize::try_from(self.remaining)
                .unwrap_or(READ_CHUNK)
                .min(READ_CHUNK);
            let mut buf = vec![0u8; want];
            self.file.read_exact(&mut buf).map_err(io)?;
            self.remaining -= want as u64;
            Ok(Some(buf))
        })();
        Box::pin(async move { result })
    }
}

impl BlobStore for DirBlobStore {
    fn put<'a>(
        &'a self,
        source: &'a mut dyn ChunkSource,
        max_size: u64,
    ) -> LocalBoxFuture<'a, Result<StoredBlob, BlobError>> {
        Box::pin(async move {
            let n = UPLOAD_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self.tmp.join(format!("upload-{}-{n}", std::process::id()));
            let mut file = File::create(&tmp).map_err(io)?;
            let mut meter = UploadMeter::new();
            let written: Result<(), BlobError> = async {
                while let Some(chunk) = source.next_chunk().await? {
                    self.put_sync_part(&mut file, &mut meter, &chunk, max_size)?;
                }
                // Durable before it becomes visible under its CID.
                file.sync_all().map_err(io)
            }
            .await;
            drop(file);
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            let stored = meter.finish();
            if let Err(e) = fs::rename(&tmp, self.path_of(&stored.cid)) {
                let _ = fs::remove_file(&tmp);
                return Err(io(e));
            }
            // The rename itself is durable once the directory is synced.
            File::open(&self.root)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(stored)
        })
    }

    fn get<'a>(
        &'a self,
        cid: &'a Cid,
        range: Option<ByteRange>,
    ) -> LocalBoxFuture<'a, Result<Option<BlobBody>, BlobError>> {
        let result = self.read_range(cid, range);
        Box::pin(async move { result })
    }

    fn delete<'a>(&'a self, cid: &'a Cid) -> LocalBoxFuture<'a, Result<bool, BlobError>> {
        let result = match fs::remove_file(self.path_of(cid)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e)),
        };
        Box::pin(async move { result })
    }

    fn remove_leftovers<'a>(
        &'a self,
        before_ms: i64,
        is_known: &'a dyn Fn(&Cid) -> bool,
    ) -> LocalBoxFuture<'a, Result<usize, BlobError>> {
        let result = Self::remove_where(&self.tmp, before_ms, &|_| true).and_then(|temporary| {
            let unknown = Self::remove_where(&self.root, before_ms, &|name| {
                crate::data::parse_cid(name).is_ok_and(|cid| !is_known(&cid))
            })?;
            Ok(temporary + unknown)
        });
        Box::pin(async move { result })
    }

    fn list<'a>(
        &'a self,
        after: Option<&'a Cid>,
        limit: usize,
    ) -> LocalBoxFuture<'a, Result<Vec<Cid>, BlobError>> {
        let result = (|| {
            let after = after.map(crate::data::cid_string);
            let mut names: Vec<String> = Vec::new();
            for entry in fs::read_dir(&self.root).map_err(io)? {
                let entry = entry.map_err(io)?;
                if !entry.file_type().map_err(io)?.is_file() {
                    continue;
                }
                if let Some(name) = entry.file_name().to_str() {
                    if after.as_deref().is_none_or(|a| name > a) {
                        names.push(name.to_owned());
                    }
                }
            }
            names.sort();
            names
                .into_iter()
                // Files that are not CIDs are not blobs (stray files): skipped.
                .filter_map(|n| crate::data::parse_cid(&n).ok())
                .take(limit)
                .map(Ok)
                .collect()
        })();
        Box::pin(async move { result })
    }
}
