//! Canonical DAG-CBOR for the atproto data model.
//!
//! The encoder writes the one canonical form: shortest heads, map keys ordered by
//! length then bytes, CIDs as tag 42 over `0x00 || cid bytes`. The decoder accepts
//! only that form, so a block's bytes (and therefore its CID) are a function of its
//! value: anything else, including floats, indefinite lengths, non-string or unordered
//! keys and tags other than 42, is refused. It never allocates more than the input
//! could justify, because every length is checked against the bytes that remain.

use std::fmt;
use std::io::Cursor;

use cid::Cid;
use pds_api::runtime::value::{Map, Value};

/// How deeply arrays and maps may nest before decoding gives up (protects the stack).
pub const MAX_DEPTH: usize = 128;

/// CBOR major types (the top three bits of a head byte).
pub const MAJOR_UINT: u8 = 0;
pub const MAJOR_NEGINT: u8 = 1;
pub const MAJOR_BYTES: u8 = 2;
pub const MAJOR_TEXT: u8 = 3;
pub const MAJOR_ARRAY: u8 = 4;
pub const MAJOR_MAP: u8 = 5;
pub const MAJOR_TAG: u8 = 6;
pub const MAJOR_SIMPLE: u8 = 7;
/// The DAG-CBOR tag of a CID.
pub const TAG_CID: u64 = 42;

/// Encodes a value as canonical DAG-CBOR into a new buffer.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out);
    out
}

/// Appends the canonical DAG-CBOR encoding of `value` to `out` (reuse `out` in hot loops).
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Integer(i) => write_int(out, *i),
        Value::String(s) => write_text(out, s),
        Value::Bytes(b) => write_bytes(out, b),
        Value::Link(cid) => write_cid(out, cid),
        Value::Array(items) => {
            write_head(out, MAJOR_ARRAY, items.len() as u64);
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Map(map) => write_map(out, map),
    }
}

/// Writes a CBOR head: major type and argument in its shortest form.
pub fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Writes an integer (major 0 or 1).
pub fn write_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        write_head(out, MAJOR_UINT, i as u64);
    } else {
        // -1 - i, which is the bitwise complement in two's complement.
        write_head(out, MAJOR_NEGINT, !i as u64);
    }
}

/// Writes a text string.
pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a byte string.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes a CID link: tag 42 over a byte string of `0x00 || cid bytes`.
pub fn write_cid(out: &mut Vec<u8>, cid: &Cid) {
    out.extend_from_slice(&[0xd8, TAG_CID as u8]);
    write_head(out, MAJOR_BYTES, cid.encoded_len() as u64 + 1);
    out.push(0x00);
    // Writing into a Vec cannot fail.
    let _ = cid.write_bytes(&mut *out);
}

/// The canonical order of DAG-CBOR map keys: shorter first, then bytewise.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

fn write_map(out: &mut Vec<u8>, map: &Map) {
    write_head(out, MAJOR_MAP, map.len() as u64);
    // The BTreeMap is already in bytewise order; when key lengths never decrease that
    // is also the canonical order and no sorting buffer is needed.
    let mut prev_len = 0;
    let already_canonical = map.keys().all(|k| {
        let ok = k.len() >= prev_len;
        prev_len = k.len();
        ok
    });
    if already_canonical {
        for (k, v) in map {
            write_text(out, k);
            encode_into(v, out);
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        // Stable sort by length keeps the bytewise order among equal lengths.
        entries.sort_by_key(|(k, _)| k.len());
        for (k, v) in entries {
            write_text(out, k);
            encode_into(v, out);
        }
    }
}

/// Why bytes were refused as DAG-CBOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborError {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: CborErrorKind,
}

/// The rule a DAG-CBOR input broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CborErrorKind {
    /// The input ended inside an item.
    UnexpectedEnd,
    /// An integer or length was not written in its shortest form.
    NonCanonicalHead,
    /// Indefinite-length strings, arrays or maps.
    IndefiniteLength,
    /// Reserved additional-information values 28..=30.
    ReservedAdditionalInfo,
    /// Floating-point numbers are not part of the data model.
    Float,
    /// Simple values other than false, true, null.
    UnsupportedSimple,
    /// Integers outside the signed 64-bit range.
    IntegerOutOfRange,
    /// A text string that is not UTF-8.
    InvalidUtf8,
    /// A map key that is not a text string.
    NonStringKey,
    /// A map key equal to the one before it.
    DuplicateKey,
    /// A map key not in canonical (length, then bytewise) order.
    MisorderedKey,
    /// Tags other than 42.
    UnsupportedTag(u64),
    /// A tag-42 payload that is not `0x00` followed by exactly one valid CID.
    InvalidCid,
    /// Bytes after the top-level item.
    TrailingBytes,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A length prefix larger than the remaining input could hold.
    LengthTooLarge,
}

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            CborErrorKind::UnexpectedEnd => "unexpected end of input".to_string(),
            CborErrorKind::NonCanonicalHead => "integer or length not minimally encoded".into(),
            CborErrorKind::IndefiniteLength => "indefinite-length item".into(),
            CborErrorKind::ReservedAdditionalInfo => "reserved additional information".into(),
            CborErrorKind::Float => "floating-point number".into(),
            CborErrorKind::UnsupportedSimple => "simple value other than false/true/null".into(),
            CborErrorKind::IntegerOutOfRange => "integer outside the 64-bit signed range".into(),
            CborErrorKind::InvalidUtf8 => "text string is not UTF-8".into(),
            CborErrorKind::NonStringKey => "map key is not a text string".into(),
            CborErrorKind::DuplicateKey => "duplicate map key".into(),
            CborErrorKind::MisorderedKey => "map keys not in canonical order".into(),
            CborErrorKind::UnsupportedTag(t) => format!("unsupported tag {t}"),
            CborErrorKind::InvalidCid => "invalid CID in tag 42".into(),
            CborErrorKind::TrailingBytes => "trailing bytes after the value".into(),
            CborErrorKind::TooDeep => format!("nesting deeper than {MAX_DEPTH}"),
            CborErrorKind::LengthTooLarge => "length exceeds the remaining input".into(),
        };
        write!(f, "invalid DAG-CBOR at byte {}: {what}", self.offset)
    }
}

impl std::error::Error for CborError {}

/// Decodes exactly one canonical DAG-CBOR value that fills `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder { buf: bytes, pos: 0 };
    let value = d.value::<true>(0)?;
    if d.pos != bytes.len() {
        return Err(d.err(CborErrorKind::TrailingBytes));
    }
    Ok(value)
}

/// Checks that `bytes` are exactly one canonical DAG-CBOR value, without building it
/// (no allocation). Pair with serde for strict typed decoding: see [`from_slice_strict`].
pub fn validate(bytes: &[u8]) -> Result<(), CborError> {
    let mut d = Decoder { buf: bytes, pos: 0 };
    d.value::<false>(0)?;
    if d.pos != bytes.len() {
        return Err(d.err(CborErrorKind::TrailingBytes));
    }
    Ok(())
}

/// Why typed strict decoding failed: the bytes are not canonical DAG-CBOR, or they do
/// not have the shape of the target type.
#[derive(Debug)]
pub enum StrictDecodeError {
    /// The bytes broke a DAG-CBOR rule.
    Cbor(CborError),
    /// The value does not fit the target type.
    Shape(String),
}

impl fmt::Display for StrictDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictDecodeError::Cbor(e) => e.fmt(f),
            StrictDecodeError::Shape(m) => write!(f, "unexpected DAG-CBOR shape: {m}"),
        }
    }
}

impl std::error::Error for StrictDecodeError {}

/// Decodes a typed value (commit, MST node, ...) from bytes that must be canonical
/// DAG-CBOR: checked by [`validate`] first, then read with serde_ipld_dagcbor.
pub fn from_slice_strict<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, StrictDecodeError> {
    validate(bytes).map_err(StrictDecodeError::Cbor)?;
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| StrictDecodeError::Shape(e.to_string()))
}

/// Decodes one canonical DAG-CBOR value from the front of `bytes`, returning it and the
/// number of bytes it used (for framed streams such as firehose messages).
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), CborError> {
    let mut d = Decoder { buf: bytes, pos: 0 };
    let value = d.value::<true>(0)?;
    Ok((value, d.pos))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, kind: CborErrorKind) -> CborError {
        CborError {
            offset: self.pos,
            kind,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err(CborErrorKind::UnexpectedEnd))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        if n > self.remaining() {
            return Err(self.err(CborErrorKind::UnexpectedEnd));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads the argument of a head whose additional info is `info`, checking minimality.
    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        let start = self.pos - 1;
        let (n, min) = match info {
            0..=23 => return Ok(info as u64),
            24 => (self.byte()? as u64, 24),
            25 => {
                let b = self.take(2)?;
                (u16::from_be_bytes([b[0], b[1]]) as u64, 1 << 8)
            }
            26 => {
                let b = self.take(4)?;
                (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64, 1 << 16)
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 1 << 32)
            }
            28..=30 => {
                return Err(CborError {
                    offset: start,
                    kind: CborErrorKind::ReservedAdditionalInfo,
                })
            }
            _ => {
                return Err(CborError {
                    offset: start,
                    kind: CborErrorKind::IndefiniteLength,
                })
            }
        };
        if n < min {
            return Err(CborError {
                offset: start,
                kind: CborErrorKind::NonCanonicalHead,
            });
        }
        Ok(n)
    }

    /// A length that must fit in the remaining input at `min_item_size` bytes per item.
    fn length(&mut self, info: u8, min_item_size: usize) -> Result<usize, CborError> {
        let start = self.pos - 1;
        let n = self.argument(info)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_item_size))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(CborError {
                offset: start,
                kind: CborErrorKind::LengthTooLarge,
            });
        }
        Ok(n as usize)
    }

    fn text(&mut self, info: u8) -> Result<&'a str, CborError> {
        let start = self.pos;
        let len = self.length(info, 1)?;
        let raw = self.take(len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(_) => Err(CborError {
                offset: start,
                kind: CborErrorKind::InvalidUtf8,
            }),
        }
    }

    /// Reads one value. With `BUILD = false` it only checks the bytes (no allocation)
    /// and returns `Value::Null`.
    fn value<const BUILD: bool>(&mut self, depth: usize) -> Result<Value, CborError> {
        let start = self.pos;
        let head = self.byte()?;
        let (major, info) = (head >> 5, head & 0x1f);
        match major {
            MAJOR_UINT => {
                let n = self.argument(info)?;
                i64::try_from(n).map(Value::Integer).map_err(|_| CborError {
                    offset: start,
                    kind: CborErrorKind::IntegerOutOfRange,
                })
            }
            MAJOR_NEGINT => {
                let n = self.argument(info)?;
                match i64::try_from(n) {
                    // -1 - n, the complement of n.
                    Ok(n) => Ok(Value::Integer(!n)),
                    Err(_) => Err(CborError {
                        offset: start,
                        kind: CborErrorKind::IntegerOutOfRange,
                    }),
                }
            }
            MAJOR_BYTES => {
                let len = self.length(info, 1)?;
                let b = self.take(len)?;
                Ok(if BUILD {
                    Value::Bytes(b.to_vec())
                } else {
                    Value::Null
                })
            }
            MAJOR_TEXT => {
                let t = self.text(info)?;
                Ok(if BUILD {
                    Value::String(t.to_owned())
                } else {
                    Value::Null
                })
            }
            MAJOR_ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(CborError {
                        offset: start,
                        kind: CborErrorKind::TooDeep,
                    });
                }
                let len = self.length(info, 1)?;
                if !BUILD {
                    for _ in 0..len {
                        self.value::<false>(depth + 1)?;
                    }
                    return Ok(Value::Null);
                }
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.value::<true>(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            MAJOR_MAP => {
                if depth >= MAX_DEPTH {
                    return Err(CborError {
                        offset: start,
                        kind: CborErrorKind::TooDeep,
                    });
                }
                let len = self.length(info, 2)?;
                let mut map = Map::new();
                let mut prev: Option<&'a [u8]> = None;
                for _ in 0..len {
                    let key_start = self.pos;
                    let key_head = self.byte()?;
                    if key_head >> 5 != MAJOR_TEXT {
                        return Err(CborError {
                            offset: key_start,
                            kind: CborErrorKind::NonStringKey,
                        });
                    }
                    let key = self.text(key_head & 0x1f)?;
                    if let Some(prev_key) = prev {
                        let ord = prev_key
                            .len()
                            .cmp(&key.len())
                            .then_with(|| prev_key.cmp(key.as_bytes()));
                        match ord {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(CborError {
                                    offset: key_start,
                                    kind: CborErrorKind::DuplicateKey,
                                })
                            }
                            std::cmp::Ordering::Greater => {
                                return Err(CborError {
                                    offset: key_start,
                                    kind: CborErrorKind::MisorderedKey,
                                })
                            }
                        }
                    }
                    prev = Some(key.as_bytes());
                    let v = self.value::<BUILD>(depth + 1)?;
                    if BUILD {
                        map.insert(key.to_owned(), v);
                    }
                }
                Ok(if BUILD { Value::Map(map) } else { Value::Null })
            }
            MAJOR_TAG => {
                let tag = self.argument(info)?;
                if tag != TAG_CID {
                    return Err(CborError {
                        offset: start,
                        kind: CborErrorKind::UnsupportedTag(tag),
                    });
                }
                let inner_start = self.pos;
                let inner_head = self.byte()?;
                if inner_head >> 5 != MAJOR_BYTES {
                    return Err(CborError {
                        offset: inner_start,
                        kind: CborErrorKind::InvalidCid,
                    });
                }
                let len = self.length(inner_head & 0x1f, 1)?;
                let payload = self.take(len)?;
                parse_cid_payload(payload)
                    .map(Value::Link)
                    .ok_or(CborError {
                        offset: inner_start,
                        kind: CborErrorKind::InvalidCid,
                    })
            }
            _ => {
                debug_assert_eq!(major, MAJOR_SIMPLE);
                match info {
                    20 => Ok(Value::Bool(false)),
                    21 => Ok(Value::Bool(true)),
                    22 => Ok(Value::Null),
                    25..=27 => Err(CborError {
                        offset: start,
                        kind: CborErrorKind::Float,
                    }),
                    31 => Err(CborError {
                        offset: start,
                        kind: CborErrorKind::IndefiniteLength,
                    }),
                    _ => Err(CborError {
                        offset: start,
                        kind: CborErrorKind::UnsupportedSimple,
                    }),
                }
            }
        }
    }
}

/// A tag-42 payload: the identity multibase prefix `0x00`, then one whole binary CID.
fn parse_cid_payload(payload: &[u8]) -> Option<Cid> {
    let rest = payload.strip_prefix(&[0x00])?;
    let mut cursor = Cursor::new(rest);
    let cid = Cid::read_bytes(&mut cursor).ok()?;
    (cursor.position() as usize == rest.len()).then_some(cid)
}
