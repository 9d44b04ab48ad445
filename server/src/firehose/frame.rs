//! Event-stream frames: a DAG-CBOR header followed by a DAG-CBOR body.
//!
//! Message frames have the header `{op: 1, t: "#commit"}` (the short `#name`
//! because the type belongs to `com.atproto.sync.subscribeRepos`); error frames
//! have `{op: -1}` and the body `{error, message?}`.
//!
//! # Why bodies are stored without `seq`
//!
//! The sequencer stores an [`EventBody`]: the event's kind and its DAG-CBOR
//! body *without* `seq`. The body does not depend on the number the log assigns,
//! so the sequencer can insert it in one statement (an autoincrement key) inside
//! the commit's transaction, with no second write once `seq` is known.
//! [`EventBody::frame`] then splices `seq` in at send time: every body is a
//! map of at most 12 entries (one-byte head), so framing is the header bytes,
//! the head with one more entry, the entries before `seq` in canonical key
//! order, `seq` itself, and the rest: a scan of a few short keys and one copy,
//! whatever the size of `blocks`. A live event is framed once and the same
//! bytes are shared by every subscriber (see [`super::subscriber`]).

use super::FirehoseError;
use crate::data::cbor::{
    key_order, write_head, write_int, write_text, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_MAP,
    MAJOR_NEGINT, MAJOR_SIMPLE, MAJOR_TAG, MAJOR_TEXT, MAJOR_UINT,
};
use std::cmp::Ordering;

/// How deeply a stored body may nest (ops are two levels down).
const MAX_DEPTH: usize = 16;

/// The kinds of sequenced events (`#info` is never sequenced: it is sent to
/// one subscriber, see [`info_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `#commit`: a repository commit with its diff.
    Commit,
    /// `#sync`: the repository is now at this commit (no diff).
    Sync,
    /// `#identity`: the DID document or handle may have changed.
    Identity,
    /// `#account`: the account's hosting status changed.
    Account,
}

impl EventKind {
    /// The frame header's `t`.
    pub fn tag(self) -> &'static str {
        match self {
            EventKind::Commit => "#commit",
            EventKind::Sync => "#sync",
            EventKind::Identity => "#identity",
            EventKind::Account => "#account",
        }
    }

    /// The name the storage's sequencer table stores (`kind` column).
    pub fn name(self) -> &'static str {
        &self.tag()[1..]
    }

    /// The kind for a stored name (see [`EventKind::name`]).
    pub fn from_name(name: &str) -> Option<EventKind> {
        match name {
            "commit" => Some(EventKind::Commit),
            "sync" => Some(EventKind::Sync),
            "identity" => Some(EventKind::Identity),
            "account" => Some(EventKind::Account),
            _ => None,
        }
    }

    /// The kind for a header `t`.
    pub fn from_tag(tag: &str) -> Option<EventKind> {
        match tag {
            "#commit" => Some(EventKind::Commit),
            "#sync" => Some(EventKind::Sync),
            "#identity" => Some(EventKind::Identity),
            "#account" => Some(EventKind::Account),
            _ => None,
        }
    }
}

/// The errors the stream itself reports before closing (lexicon `errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The requested cursor is past the newest sequenced event.
    FutureCursor,
    /// The subscriber did not keep up and its backlog overflowed.
    ConsumerTooSlow,
}

impl StreamError {
    /// The error name written in the body.
    pub fn name(self) -> &'static str {
        match self {
            StreamError::FutureCursor => "FutureCursor",
            StreamError::ConsumerTooSlow => "ConsumerTooSlow",
        }
    }
}

/// A sequenced event as the log stores it: its kind and its canonical
/// DAG-CBOR body without `seq` (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBody {
    /// Which event this is.
    pub kind: EventKind,
    /// The body map without `seq`.
    pub body: Vec<u8>,
}

impl EventBody {
    /// The complete frame for this event at `seq`: header, then the body with
    /// `seq` inserted at its canonical position. Fails (never panics) on a
    /// stored body that is not a small canonical map or already has `seq`.
    pub fn frame(&self, seq: u64) -> Result<Vec<u8>, FirehoseError> {
        let seq = i64::try_from(seq).map_err(|_| FirehoseError::SeqOutOfRange(seq))?;
        let body = &self.body;
        let bad = |why: &str| FirehoseError::StoredBody(why.to_owned());
        let first = *body.first().ok_or_else(|| bad("empty"))?;
        if first >> 5 != MAJOR_MAP || (first & 0x1f) >= 23 {
            return Err(bad("not a map of fewer than 23 entries"));
        }
        let entries = usize::from(first & 0x1f);
        // Find the offset of the first key that sorts after "seq", and walk
        // every entry (heads only: byte strings are skipped by length) so that
        // a truncated or padded body is refused rather than spliced.
        let mut pos = 1;
        let mut insert_at = None;
        for _ in 0..entries {
            let key_start = pos;
            let (major, len) = read_head(body, &mut pos)?;
            if major != MAJOR_TEXT {
                return Err(bad("non-text key"));
            }
            let key = take(body, &mut pos, len)?;
            let key = std::str::from_utf8(key).map_err(|_| bad("key is not UTF-8"))?;
            match key_order(key, "seq") {
                Ordering::Equal => return Err(bad("already has seq")),
                Ordering::Greater if insert_at.is_none() => insert_at = Some(key_start),
                _ => {}
            }
            skip_item(body, &mut pos, 0)?;
        }
        if pos != body.len() {
            return Err(bad("trailing bytes"));
        }
        let insert_at = insert_at.unwrap_or(pos);

        let header = message_header(self.kind.tag());
        let mut out = Vec::with_capacity(header.len() + body.len() + 13);
        out.extend_from_slice(&header);
        write_head(&mut out, MAJOR_MAP, entries as u64 + 1);
        out.extend_from_slice(&body[1..insert_at]);
        write_text(&mut out, "seq");
        write_int(&mut out, seq);
        out.extend_from_slice(&body[insert_at..]);
        Ok(out)
    }
}

/// The header of a message frame: `{t, op: 1}` in canonical order.
pub fn message_header(tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 8);
    write_head(&mut out, MAJOR_MAP, 2);
    write_text(&mut out, "t");
    write_text(&mut out, tag);
    write_text(&mut out, "op");
    write_int(&mut out, 1);
    out
}

/// An error frame: header `{op: -1}`, body `{error, message?}`.
pub fn error_frame(error: StreamError, message: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_head(&mut out, MAJOR_MAP, 1);
    write_text(&mut out, "op");
    write_int(&mut out, -1);
    write_head(&mut out, MAJOR_MAP, 1 + u64::from(message.is_some()));
    write_text(&mut out, "error");
    write_text(&mut out, error.name());
    if let Some(message) = message {
        write_text(&mut out, "message");
        write_text(&mut out, message);
    }
    out
}

/// The `#info` name for a cursor older than the log's retention.
pub const OUTDATED_CURSOR: &str = "OutdatedCursor";

/// An `#info` message frame (not sequenced: it has no `seq`).
pub fn info_frame(name: &str, message: Option<&str>) -> Vec<u8> {
    let mut out = message_header("#info");
    write_head(&mut out, MAJOR_MAP, 1 + u64::from(message.is_some()));
    write_text(&mut out, "name");
    write_text(&mut out, name);
    if let Some(message) = message {
        write_text(&mut out, "message");
        write_text(&mut out, message);
    }
    out
}

fn stored(why: &str) -> FirehoseError {
    FirehoseError::StoredBody(why.to_owned())
}

/// Reads a definite-length head; returns (major type, argument).
fn read_head(buf: &[u8], pos: &mut usize) -> Result<(u8, u64), FirehoseError> {
    let first = *buf.get(*pos).ok_or_else(|| stored("truncated"))?;
    *pos += 1;
    let major = first >> 5;
    let info = first & 0x1f;
    let width = match info {
        0..=23 => return Ok((major, u64::from(info))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Err(stored("indefinite length or reserved head")),
    };
    let bytes = take(buf, pos, width)?;
    let value = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Ok((major, value))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: u64) -> Result<&'a [u8], FirehoseError> {
    let len = usize::try_from(len).map_err(|_| stored("length too large"))?;
    let end = pos
        .checked_add(len)
        .filter(|end| *end <= buf.len())
        .ok_or_else(|| stored("truncated"))?;
    let out = &buf[*pos..end];
    *pos = end;
    Ok(out)
}

/// Skips one data item, bounded by the input (no allocation).
fn skip_item(buf: &[u8], pos: &mut usize, depth: usize) -> Result<(), FirehoseError> {
    if depth > MAX_DEPTH {
        return Err(stored("nested too deeply"));
    }
    let (major, arg) = read_head(buf, pos)?;
    match major {
        MAJOR_UINT | MAJOR_NEGINT | MAJOR_SIMPLE => Ok(()),
        MAJOR_BYTES | MAJOR_TEXT => take(buf, pos, arg).map(|_| ()),
        MAJOR_ARRAY | MAJOR_MAP => {
            let items = if major == MAJOR_MAP {
                arg.checked_mul(2)
                    .ok_or_else(|| stored("length too large"))?
            } else {
                arg
            };
            // Each item takes at least one byte: a count above the rest is corrupt.
            if items > (buf.len() - *pos) as u64 {
                return Err(stored("truncated"));
            }
            for _ in 0..items {
                skip_item(buf, pos, depth + 1)?;
            }
            Ok(())
        }
        MAJOR_TAG => skip_item(buf, pos, depth + 1),
        _ => Err(stored("unknown major type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{decode, encode, Map, Value};

    fn split_frame(frame: &[u8]) -> (Value, Value) {
        let (header, used) = crate::data::cbor::decode_prefix(frame).unwrap();
        (header, decode(&frame[used..]).unwrap())
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Map>(),
        )
    }

    #[test]
    fn seq_is_spliced_at_its_canonical_place() {
        // "ops" and "rev" sort before "seq"; "repo" (longer) after.
        let without = map(&[
            ("ops", Value::Array(vec![Value::Integer(1)])),
            ("rev", Value::String("r".into())),
            ("repo", Value::String("did:plc:x".into())),
            ("blocks", Value::Bytes(vec![0; 300])),
        ]);
        let stored = EventBody {
            kind: EventKind::Commit,
            body: encode(&without),
        };
        let frame = stored.frame(1_000_000).unwrap();
        let (header, body) = split_frame(&frame);
        assert_eq!(
            header,
            map(&[
                ("op", Value::Integer(1)),
                ("t", Value::String("#commit".into()))
            ])
        );
        let Value::Map(mut expected) = without else {
            unreachable!()
        };
        expected.insert("seq".into(), Value::Integer(1_000_000));
        // decode() only accepts canonical order, so this also checks placement.
        assert_eq!(body, Value::Map(expected.clone()));
        assert_eq!(
            &frame[message_header("#commit").len()..],
            encode(&Value::Map(expected))
        );
    }

    #[test]
    fn seq_goes_first_or_last_when_keys_say_so() {
        for (keys, kind) in [
            (vec!["time", "handle"], EventKind::Identity),
            (vec!["did", "rev"], EventKind::Sync),
            (vec![], EventKind::Account),
        ] {
            let without = map(&keys
                .iter()
                .map(|k| (*k, Value::Bool(true)))
                .collect::<Vec<_>>());
            let frame = EventBody {
                kind,
                body: encode(&without),
            }
            .frame(7)
            .unwrap();
            let (header, body) = split_frame(&frame);
            let Value::Map(h) = header else { panic!() };
            assert_eq!(h["t"], Value::String(kind.tag().into()));
            let Value::Map(b) = body else { panic!() };
            assert_eq!(b["seq"], Value::Integer(7));
            assert_eq!(b.len(), keys.len() + 1);
        }
    }

    #[test]
    fn corrupt_stored_bodies_are_errors() {
        let with_seq = encode(&map(&[("seq", Value::Integer(1))]));
        let not_map = encode(&Value::Array(vec![]));
        let mut truncated = encode(&map(&[("blocks", Value::Bytes(vec![1; 50]))]));
        truncated.truncate(20);
        let mut trailing = encode(&map(&[("did", Value::Null)]));
        trailing.push(0);
        let huge_count = vec![
            0xa1, 0x63, b'd', b'i', b'd', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        for body in [with_seq, not_map, truncated, trailing, huge_count, vec![]] {
            let stored = EventBody {
                kind: EventKind::Commit,
                body,
            };
            assert!(matches!(stored.frame(1), Err(FirehoseError::StoredBody(_))));
        }
        let ok = EventBody {
            kind: EventKind::Commit,
            body: encode(&map(&[])),
        };
        assert_eq!(
            ok.frame(u64::MAX),
            Err(FirehoseError::SeqOutOfRange(u64::MAX))
        );
    }

    #[test]
    fn error_and_info_frames() {
        let (header, body) = split_frame(&error_frame(StreamError::FutureCursor, Some("ahead")));
        assert_eq!(header, map(&[("op", Value::Integer(-1))]));
        assert_eq!(
            body,
            map(&[
                ("error", Value::String("FutureCursor".into())),
                ("message", Value::String("ahead".into()))
            ])
        );
        let (_, body) = split_frame(&error_frame(StreamError::ConsumerTooSlow, None));
        assert_eq!(
            body,
            map(&[("error", Value::String("ConsumerTooSlow".into()))])
        );
        let (header, body) = split_frame(&info_frame(OUTDATED_CURSOR, None));
        assert_eq!(
            header,
            map(&[
                ("op", Value::Integer(1)),
                ("t", Value::String("#info".into()))
            ])
        );
        assert_eq!(
            body,
            map(&[("name", Value::String("OutdatedCursor".into()))])
        );
    }

    #[test]
    fn kinds_round_trip_their_tags() {
        for kind in [
            EventKind::Commit,
            EventKind::Sync,
            EventKind::Identity,
            EventKind::Account,
        ] {
            assert_eq!(EventKind::from_tag(kind.tag()), Some(kind));
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(EventKind::from_tag("#info"), None);
        assert_eq!(EventKind::from_name("info"), None);
        assert_eq!(EventKind::Commit.name(), "commit");
    }
}
