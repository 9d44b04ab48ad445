//! CAR v1 streams: a header `{version: 1, roots: [cid]}`, then blocks, each
//! prefixed by the unsigned-varint length of CID + bytes.
//!
//! The writer emits bytes as it goes; the decoder is push-based (feed it
//! chunks as they arrive) and holds at most one block plus one chunk, so
//! neither side needs the whole repository in memory.

use super::cbor::{cid_matches, decode_canonical, encode};
use super::error::{RepoError, Result};
use cid::Cid;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// Default cap on one block (CID + bytes): records are at most 1 MiB, MST
/// nodes far less.
pub const DEFAULT_MAX_BLOCK_LEN: usize = 2 * 1024 * 1024;
/// Cap on the header.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CarHeader {
    version: u64,
    roots: Vec<Cid>,
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The header of a CAR with one root, length prefix included.
pub fn header_bytes(root: &Cid) -> Result<Vec<u8>> {
    let header = encode(&CarHeader {
        version: 1,
        roots: vec![*root],
    })?;
    let mut out = Vec::with_capacity(header.len() + 2);
    put_varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    Ok(out)
}

/// One block section: varint length, CID bytes, block bytes.
pub fn block_bytes(cid: &Cid, bytes: &[u8]) -> Vec<u8> {
    let cid_bytes = cid.to_bytes();
    let mut out = Vec::with_capacity(cid_bytes.len() + bytes.len() + 4);
    put_varint(&mut out, (cid_bytes.len() + bytes.len()) as u64);
    out.extend_from_slice(&cid_bytes);
    out.extend_from_slice(bytes);
    out
}

/// Writes a CAR into any `Write` sink, block by block.
pub struct CarWriter<W: Write> {
    sink: W,
    written: u64,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header for `root`.
    pub fn new(mut sink: W, root: &Cid) -> Result<Self> {
        let header = header_bytes(root)?;
        sink.write_all(&header).map_err(io_error)?;
        Ok(Self {
            sink,
            written: header.len() as u64,
        })
    }
    /// Appends one block.
    pub fn write_block(&mut self, cid: &Cid, bytes: &[u8]) -> Result<()> {
        let section = block_bytes(cid, bytes);
        self.sink.write_all(&section).map_err(io_error)?;
        self.written += section.len() as u64;
        Ok(())
    }
    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }
    /// Flushes and returns the sink.
    pub fn finish(mut self) -> Result<W> {
        self.sink.flush().map_err(io_error)?;
        Ok(self.sink)
    }
}

fn io_error(e: std::io::Error) -> RepoError {
    RepoError::Car(format!("I/O: {e}"))
}

/// Result of reading a varint from a buffer.
enum Varint {
    Value(u64, usize),
    Incomplete,
}

fn read_varint(buf: &[u8]) -> Result<Varint> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate() {
        if i == 9 && *byte > 1 {
            return Err(RepoError::Car("varint overflows 64 bits".into()));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && *byte == 0 {
                return Err(RepoError::Car("varint not minimally encoded".into()));
            }
            return Ok(Varint::Value(value, i + 1));
        }
        if i == 9 {
            return Err(RepoError::Car("varint longer than 10 bytes".into()));
        }
    }
    Ok(Varint::Incomplete)
}

/// Push-based CAR decoder: `feed` chunks, then pull the header and blocks;
/// `finish` once the input ended to detect truncation.
pub struct CarDecoder {
    buf: Vec<u8>,
    /// Read position in `buf` (consumed bytes are dropped lazily).
    pos: usize,
    roots: Option<Vec<Cid>>,
    max_block_len: usize,
}

impl Default for CarDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BLOCK_LEN)
    }
}

impl CarDecoder {
    /// A decoder that rejects blocks longer than `max_block_len`.
    pub fn new(max_block_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            roots: None,
            max_block_len,
        }
    }

    /// Adds input bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The header's roots, once the header has been decoded.
    pub fn roots(&self) -> Option<&[Cid]> {
        self.roots.as_deref()
    }

    /// One length-prefixed section, if all of it has arrived.
    fn section(&mut self, max: usize) -> Result<Option<(usize, usize)>> {
        let rest = &self.buf[self.pos..];
        let (len, prefix) = match read_varint(rest)? {
            Varint::Incomplete => return Ok(None),
            Varint::Value(len, prefix) => (len, prefix),
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(RepoError::Car(format!(
                "section of {len} bytes exceeds the limit of {max}"
            )));
        }
        if len == 0 {
            return Err(RepoError::Car("empty section".into()));
        }
        if rest.len() < prefix + len {
            return Ok(None);
        }
        let start = self.pos + prefix;
        self.pos = start + len;
        Ok(Some((start, start + len)))
    }

    /// Decodes the header if it has arrived: `Ok(None)` means "feed more".
    pub fn header(&mut self) -> Result<Option<&[Cid]>> {
        if self.roots.is_none() {
            let Some((start, end)) = self.section(MAX_HEADER_LEN)? else {
                return Ok(None);
            };
            let header: CarHeader = decode_canonical(&self.buf[start..end], "CAR header")
                .map_err(|e| RepoError::Car(format!("bad header: {e}")))?;
            if header.version != 1 {
                return Err(RepoError::Car(format!(
                    "version {} (want 1)",
                    header.version
                )));
            }
            self.roots = Some(header.roots);
        }
        Ok(self.roots.as_deref())
    }

    /// The next block whose bytes have all arrived, checked against its CID.
    /// `Ok(None)` means "feed more" (or the end, see [`CarDecoder::finish`]).
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>> {
        if self.roots.is_none() && self.header()?.is_none() {
            return Ok(None);
        }
        let Some((start, end)) = self.section(self.max_block_len)? else {
            return Ok(None);
        };
        let mut section = &self.buf[start..end];
        let cid =
            Cid::read_bytes(&mut section).map_err(|e| RepoError::Car(format!("bad CID: {e}")))?;
        if cid.version() != cid::Version::V1 {
            return Err(RepoError::Car(format!(
                "CIDv0 block {}",
                crate::data::cid_string(&cid)
            )));
        }
        let bytes = section.to_vec();
        if !cid_matches(&cid, &bytes) {
            return Err(RepoError::Car(format!(
                "block bytes do not match CID {}",
                crate::data::cid_string(&cid)
            )));
        }
        Ok(Some((cid, bytes)))
    }

    /// Call at end of input: fails if a header or block was cut short.
    pub fn finish(&self) -> Result<()> {
        if self.roots.is_none() {
            return Err(RepoError::Car("truncated: no header".into()));
        }
        if self.pos < self.buf.len() {
            return Err(RepoError::Car(format!(
                "truncated: {} trailing bytes",
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }
}

/// Pull-based reader over any `Read` source, built on [`CarDecoder`].
pub struct CarReader<R: Read> {
    source: R,
    decoder: CarDecoder,
    chunk: Vec<u8>,
    eof: bool,
    /// Set after an error: the iterator then ends.
    failed: bool,
}

impl<R: Read> CarReader<R> {
    /// Reads the header; fails on a bad or truncated one.
    pub fn new(source: R) -> Result<Self> {
        Self::with_limit(source, DEFAULT_MAX_BLOCK_LEN)
    }

    /// Like [`CarReader::new`] with a block size cap.
    pub fn with_limit(source: R, max_block_len: usize) -> Result<Self> {
        let mut reader = Self {
            source,
            decoder: CarDecoder::new(max_block_len),
            chunk: vec![0; 64 * 1024],
            eof: false,
            failed: false,
        };
        loop {
            if reader.decoder.header()?.is_some() {
                return Ok(reader);
            }
            if !reader.fill()? {
                return Err(RepoError::Car("truncated: no header".into()));
            }
        }
    }

    /// The roots from the header.
    pub fn roots(&self) -> &[Cid] {
        self.decoder.roots().unwrap_or(&[])
    }

    fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let n = self.source.read(&mut self.chunk).map_err(io_error)?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.decoder.feed(&self.chunk[..n]);
        Ok(true)
    }

    /// The next block, or `None` at a clean end of input.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>> {
        loop {
            if let Some(block) = self.decoder.next_block()? {
                return Ok(Some(block));
            }
            if !self.fill()? {
                self.decoder.finish()?;
                return Ok(None);
            }
        }
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<(Cid, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_block().transpose();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}
