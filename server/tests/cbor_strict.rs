//! The strict DAG-CBOR decoder refuses every non-canonical form, and random values
//! round-trip through the encoder into canonical bytes.

use pds::data::cbor::{decode, encode, CborErrorKind, MAX_DEPTH};
use pds::data::{cid_for_cbor, cid_for_raw, Map, Value};

/// The decoder's verdict, checked to be the same as the allocation-free validator's.
fn kind(bytes: &[u8]) -> CborErrorKind {
    let validated = pds::data::validate(bytes);
    match decode(bytes) {
        Ok(v) => panic!("accepted {bytes:02x?} as {v:?}"),
        Err(e) => {
            assert_eq!(
                validated,
                Err(e.clone()),
                "validate disagrees on {bytes:02x?}"
            );
            e.kind
        }
    }
}

#[test]
fn canonical_basics() {
    assert_eq!(encode(&Value::Integer(0)), [0x00]);
    assert_eq!(encode(&Value::Integer(23)), [0x17]);
    assert_eq!(encode(&Value::Integer(24)), [0x18, 24]);
    assert_eq!(encode(&Value::Integer(256)), [0x19, 1, 0]);
    assert_eq!(encode(&Value::Integer(-1)), [0x20]);
    assert_eq!(encode(&Value::Integer(-25)), [0x38, 24]);
    assert_eq!(
        encode(&Value::Integer(i64::MIN)),
        [0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(
        decode(&encode(&Value::Integer(i64::MIN))).unwrap(),
        Value::Integer(i64::MIN)
    );
    assert_eq!(
        decode(&encode(&Value::Integer(i64::MAX))).unwrap(),
        Value::Integer(i64::MAX)
    );
    assert_eq!(encode(&Value::Null), [0xf6]);
    assert_eq!(encode(&Value::Bool(true)), [0xf5]);
    // Keys: "b" (len 1) before "aa" (len 2) even though "aa" < "b" bytewise.
    let mut m = Map::new();
    m.insert("aa".into(), Value::Integer(1));
    m.insert("b".into(), Value::Integer(2));
    assert_eq!(
        encode(&Value::Map(m)),
        [0xa2, 0x61, b'b', 0x02, 0x62, b'a', b'a', 0x01]
    );
}

#[test]
fn rejects_non_minimal_heads() {
    assert_eq!(kind(&[0x18, 0x17]), CborErrorKind::NonCanonicalHead);
    assert_eq!(kind(&[0x19, 0x00, 0xff]), CborErrorKind::NonCanonicalHead);
    assert_eq!(
        kind(&[0x1a, 0x00, 0x00, 0xff, 0xff]),
        CborErrorKind::NonCanonicalHead
    );
    assert_eq!(
        kind(&[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        CborErrorKind::NonCanonicalHead
    );
    assert_eq!(kind(&[0x38, 0x01]), CborErrorKind::NonCanonicalHead);
    // Non-minimal lengths of strings, arrays and maps.
    assert_eq!(kind(&[0x78, 0x01, b'a']), CborErrorKind::NonCanonicalHead);
    assert_eq!(kind(&[0x58, 0x00]), CborErrorKind::NonCanonicalHead);
    assert_eq!(kind(&[0x98, 0x00]), CborErrorKind::NonCanonicalHead);
    assert_eq!(kind(&[0xb8, 0x00]), CborErrorKind::NonCanonicalHead);
}

#[test]
fn rejects_indefinite_lengths_and_reserved_info() {
    assert_eq!(
        kind(&[0x5f, 0x41, 0x00, 0xff]),
        CborErrorKind::IndefiniteLength
    );
    assert_eq!(
        kind(&[0x7f, 0x61, b'a', 0xff]),
        CborErrorKind::IndefiniteLength
    );
    assert_eq!(kind(&[0x9f, 0x01, 0xff]), CborErrorKind::IndefiniteLength);
    assert_eq!(
        kind(&[0xbf, 0x61, b'a', 0x01, 0xff]),
        CborErrorKind::IndefiniteLength
    );
    assert_eq!(kind(&[0xff]), CborErrorKind::IndefiniteLength);
    assert_eq!(kind(&[0x1c]), CborErrorKind::ReservedAdditionalInfo);
}

#[test]
fn rejects_floats_and_other_simples() {
    assert_eq!(kind(&[0xf9, 0x3c, 0x00]), CborErrorKind::Float);
    assert_eq!(kind(&[0xfa, 0x3f, 0x80, 0, 0]), CborErrorKind::Float);
    assert_eq!(
        kind(&[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        CborErrorKind::Float
    );
    assert_eq!(kind(&[0xf7]), CborErrorKind::UnsupportedSimple); // undefined
    assert_eq!(kind(&[0xf0]), CborErrorKind::UnsupportedSimple);
    assert_eq!(kind(&[0xf8, 0x20]), CborErrorKind::UnsupportedSimple);
}

#[test]
fn rejects_integers_outside_i64() {
    assert_eq!(
        kind(&[0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        CborErrorKind::IntegerOutOfRange
    );
    assert_eq!(
        kind(&[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        CborErrorKind::IntegerOutOfRange
    );
}

#[test]
fn rejects_bad_map_keys() {
    // Duplicate key "a".
    assert_eq!(
        kind(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]),
        CborErrorKind::DuplicateKey
    );
    // "b" then "a": bytewise misorder.
    assert_eq!(
        kind(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]),
        CborErrorKind::MisorderedKey
    );
    // "aa" then "b": bytewise order, but the longer key must come second.
    assert_eq!(
        kind(&[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02]),
        CborErrorKind::MisorderedKey
    );
    // Integer key, byte-string key.
    assert_eq!(kind(&[0xa1, 0x01, 0x02]), CborErrorKind::NonStringKey);
    assert_eq!(kind(&[0xa1, 0x41, b'a', 0x02]), CborErrorKind::NonStringKey);
}

#[test]
fn rejects_invalid_utf8() {
    assert_eq!(kind(&[0x62, 0xc3, 0x28]), CborErrorKind::InvalidUtf8);
    assert_eq!(kind(&[0xa1, 0x61, 0xff, 0x01]), CborErrorKind::InvalidUtf8);
}

#[test]
fn rejects_tags_other_than_42_and_bad_cids() {
    // Tag 0 (datetime string), tag 2 (bignum), tag 55799 (self-describe).
    assert_eq!(kind(&[0xc0, 0x61, b'a']), CborErrorKind::UnsupportedTag(0));
    assert_eq!(kind(&[0xc2, 0x41, 0x01]), CborErrorKind::UnsupportedTag(2));
    assert_eq!(
        kind(&[0xd9, 0xd9, 0xf7, 0x01]),
        CborErrorKind::UnsupportedTag(55799)
    );

    let cid = cid_for_cbor(b"x");
    let good = encode(&Value::Link(cid));
    assert_eq!(decode(&good).unwrap(), Value::Link(cid));
    let cid_bytes = cid.to_bytes();

    // Missing 0x00 multibase prefix.
    let mut no_prefix = vec![0xd8, 0x2a, 0x58, cid_bytes.len() as u8];
    no_prefix.extend_from_slice(&cid_bytes);
    assert_eq!(kind(&no_prefix), CborErrorKind::InvalidCid);
    // Tag 42 over a text string.
    assert_eq!(kind(&[0xd8, 0x2a, 0x61, b'a']), CborErrorKind::InvalidCid);
    // Truncated CID, CID with a trailing byte, garbage.
    let mut truncated = vec![0xd8, 0x2a, 0x58, cid_bytes.len() as u8, 0x00];
    truncated.extend_from_slice(&cid_bytes[..cid_bytes.len() - 1]);
    assert_eq!(kind(&truncated), CborErrorKind::InvalidCid);
    let mut extra = vec![0xd8, 0x2a, 0x58, cid_bytes.len() as u8 + 2, 0x00];
    extra.extend_from_slice(&cid_bytes);
    extra.push(0x00);
    assert_eq!(kind(&extra), CborErrorKind::InvalidCid);
    assert_eq!(
        kind(&[0xd8, 0x2a, 0x43, 0x00, 0x05, 0x05]),
        CborErrorKind::InvalidCid
    );
    // Tag 42 written with a non-minimal head.
    let mut long_tag = vec![0xd9, 0x00, 0x2a];
    long_tag.extend_from_slice(&good[2..]);
    assert_eq!(kind(&long_tag), CborErrorKind::NonCanonicalHead);
}

#[test]
fn rejects_trailing_bytes_and_truncation() {
    assert_eq!(kind(&[0x01, 0x02]), CborErrorKind::TrailingBytes);
    assert_eq!(kind(&[0xa0, 0xa0]), CborErrorKind::TrailingBytes);
    assert_eq!(kind(&[]), CborErrorKind::UnexpectedEnd);
    assert_eq!(kind(&[0x19, 0x01]), CborErrorKind::UnexpectedEnd);
    assert_eq!(kind(&[0x82, 0x01]), CborErrorKind::LengthTooLarge);
    assert_eq!(
        kind(&[0x82, 0x82, 0x01, 0x01]),
        CborErrorKind::UnexpectedEnd
    );
}

#[test]
fn lengths_are_checked_against_remaining_input() {
    // Claims of 2^32 and 2^63 items/bytes in a few bytes of input: refused up front.
    assert_eq!(
        kind(&[0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        CborErrorKind::LengthTooLarge
    );
    assert_eq!(
        kind(&[0x7a, 0xff, 0xff, 0xff, 0xff, b'a']),
        CborErrorKind::LengthTooLarge
    );
    assert_eq!(
        kind(&[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        CborErrorKind::LengthTooLarge
    );
    assert_eq!(
        kind(&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        CborErrorKind::LengthTooLarge
    );
    // A map of 2 entries needs at least 4 more bytes.
    assert_eq!(
        kind(&[0xa2, 0x61, b'a', 0x01]),
        CborErrorKind::LengthTooLarge
    );
}

#[test]
fn nesting_limit() {
    let mut ok = vec![0x81; MAX_DEPTH];
    ok.push(0x01);
    assert!(decode(&ok).is_ok());
    let mut deep = vec![0x81; MAX_DEPTH + 1];
    deep.push(0x01);
    assert_eq!(kind(&deep), CborErrorKind::TooDeep);
    let mut deep_maps = Vec::new();
    for _ in 0..=MAX_DEPTH {
        deep_maps.extend_from_slice(&[0xa1, 0x61, b'a']);
    }
    deep_maps.push(0x01);
    assert_eq!(kind(&deep_maps), CborErrorKind::TooDeep);
    // Far deeper than the limit still fails cleanly instead of overflowing the stack.
    let huge = vec![0x81; 1_000_000];
    assert_eq!(kind(&huge), CborErrorKind::TooDeep);
}

/// xorshift64*: a small deterministic PRNG so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_string(rng: &mut Rng) -> String {
    const ALPHABET: [&str; 10] = ["a", "b", "z", "$", "é", "☎", "😀", "A", "0", "~"];
    let len = rng.below(6);
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth >= 4 { 6 } else { 8 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 1),
        2 => {
            // Mix small values and values around every head-size boundary.
            let boundaries = [
                0i64,
                23,
                24,
                255,
                256,
                65535,
                65536,
                4294967295,
                4294967296,
                i64::MAX,
            ];
            let b = boundaries[rng.below(boundaries.len() as u64) as usize];
            let jitter = rng.below(3) as i64 - 1;
            let v = b.saturating_add(jitter);
            Value::Integer(if rng.below(2) == 0 { v } else { -v - 1 })
        }
        3 => Value::String(random_string(rng)),
        4 => Value::Bytes((0..rng.below(40)).map(|_| rng.next() as u8).collect()),
        5 => {
            let seed = rng.next().to_be_bytes();
            Value::Link(if rng.below(2) == 0 {
                cid_for_cbor(&seed)
            } else {
                cid_for_raw(&seed)
            })
        }
        6 => Value::Array(
            (0..rng.below(5))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(6) {
                m.insert(random_string(rng), random_value(rng, depth + 1));
            }
            Value::Map(m)
        }
    }
}

#[test]
fn random_values_round_trip_canonically() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::new();
    for i in 0..5_000 {
        let value = random_value(&mut rng, 0);
        buf.clear();
        pds::data::encode_into(&value, &mut buf);
        assert_eq!(pds::data::validate(&buf), Ok(()), "case {i}");
        let decoded = decode(&buf).unwrap_or_else(|e| panic!("case {i}: {e} for {value:?}"));
        assert_eq!(decoded, value, "case {i}");
        // Canonical: re-encoding the decoded value gives the same bytes, and the serde
        // DAG-CBOR path (an independent canonical encoder) agrees.
        assert_eq!(encode(&decoded), buf, "case {i}");
        assert_eq!(serde_ipld_dagcbor::to_vec(&value).unwrap(), buf, "case {i}");
        // JSON form round-trips too.
        assert_eq!(
            Value::from_json(&value.to_json()).unwrap(),
            value,
            "case {i}"
        );
        // Every strict prefix is refused (truncation never decodes to something else).
        if buf.len() > 1 {
            let cut = 1 + rng.below(buf.len() as u64 - 1) as usize;
            assert!(
                decode(&buf[..cut]).is_err(),
                "case {i}: prefix {cut} accepted"
            );
        }
    }
}

/// Random byte strings never panic the decoder; anything it accepts re-encodes identically.
#[test]
fn random_bytes_never_panic_and_accepted_input_is_canonical() {
    let mut rng = Rng(42);
    let mut accepted = 0;
    for _ in 0..50_000 {
        let len = rng.below(24) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let decoded = decode(&bytes);
        assert_eq!(
            pds::data::validate(&bytes),
            decoded.as_ref().map(|_| ()).map_err(Clone::clone)
        );
        if let Ok(v) = decoded {
            accepted += 1;
            assert_eq!(encode(&v), bytes);
        }
    }
    assert!(accepted > 0);
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Node {
    l: Option<cid::Cid>,
    e: Vec<i64>,
}

#[test]
fn typed_strict_decoding() {
    use pds::data::{from_slice_strict, StrictDecodeError};
    // {"e": [1], "l": null} in canonical order.
    let good = [0xa2, 0x61, b'e', 0x81, 0x01, 0x61, b'l', 0xf6];
    assert_eq!(
        from_slice_strict::<Node>(&good).unwrap(),
        Node {
            l: None,
            e: vec![1]
        }
    );
    // Same content, keys misordered: serde alone would accept it, strict decoding does not.
    let misordered = [0xa2, 0x61, b'l', 0xf6, 0x61, b'e', 0x81, 0x01];
    assert!(serde_ipld_dagcbor::from_slice::<Node>(&misordered).is_ok());
    assert!(matches!(
        from_slice_strict::<Node>(&misordered),
        Err(StrictDecodeError::Cbor(_))
    ));
    // Canonical but the wrong shape.
    let wrong = [0xa2, 0x61, b'e', 0x61, b'x', 0x61, b'l', 0xf6];
    assert!(matches!(
        from_slice_strict::<Node>(&wrong),
        Err(StrictDecodeError::Shape(_))
    ));
}
