//! CID strings read the way the reference reads them (multiformats' `CID.parse`): base32
//! (`b…`), base58btc (`z…`), or a bare base58btc CIDv0 (`Qm…`). Other multibase prefixes are
//! refused, as the reference refuses them without a decoder for them.
//!
//! Written the same way: CIDv1 as `b` + base32, CIDv0 as its bare base58btc.
//!
//! Hand-written rather than through the `cid` crate's `FromStr` and `Display`, which go through
//! `multibase`'s match over every base (and so link a coder for each; the decoders alone were
//! about 45 KB of wasm) to read strings no atproto implementation writes, and to write one of
//! two.

use cid::Cid;

use crate::serde_value::DecodeError;

/// Why a string is not a CID: the runtime's one decoding error, a message.
pub type CidStrError = DecodeError;

fn err(why: &str) -> CidStrError {
    DecodeError(why.to_owned())
}

/// Parses a CID string: `b` + base32 (lower case, no padding), `z` + base58btc, or a CIDv0
/// (`Qm` + 44 base58btc characters).
pub fn parse_cid(s: &str) -> Result<Cid, CidStrError> {
    let bytes = if s.len() == 46 && s.starts_with("Qm") {
        base58btc_decode(s)?
    } else if let Some(rest) = s.strip_prefix('b') {
        base32_decode(rest)?
    } else if let Some(rest) = s.strip_prefix('z') {
        base58btc_decode(rest)?
    } else {
        return Err(err("not base32 (b) or base58btc (z)"));
    };
    let mut reader = bytes.as_slice();
    let cid = Cid::read_bytes(&mut reader).map_err(|e| DecodeError(e.to_string()))?;
    if !reader.is_empty() {
        return Err(err("bytes after the CID"));
    }
    Ok(cid)
}

/// RFC 4648 base32, lower-case alphabet, no padding; bits left over must be zero.
pub fn base32_decode(s: &str) -> Result<Vec<u8>, CidStrError> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(err("not base32")),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if bits >= 5 || buffer != 0 {
        return Err(err("base32 with leftover bits"));
    }
    Ok(out)
}

/// A CID's string form, as the reference writes it: CIDv1 in base32 (`b…`), CIDv0 in bare
/// base58btc (`Qm…`). What `Cid`'s `Display` writes, without linking every multibase.
pub fn cid_string(cid: &Cid) -> String {
    let bytes = cid.to_bytes();
    match cid.version() {
        cid::Version::V0 => base58btc_encode(&bytes),
        cid::Version::V1 => {
            let mut out = String::with_capacity(1 + bytes.len().div_ceil(5) * 8);
            out.push('b');
            base32_encode_into(&bytes, &mut out);
            out
        }
    }
}

/// Appends RFC 4648 base32 of `bytes` to `out`: lower-case alphabet, no padding.
pub fn base32_encode_into(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[(buffer >> bits) as usize & 31] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[(buffer << (5 - bits)) as usize & 31] as char);
    }
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin's base58 (base58btc): leading `1`s are zero bytes.
pub fn base58btc_decode(s: &str) -> Result<Vec<u8>, CidStrError> {
    if s.is_empty() {
        return Err(err("empty base58btc"));
    }
    // Big-endian base-256 digits of the number, built one base-58 digit at a time.
    let mut number: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes() {
        let mut carry = BASE58
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| err("not base58btc"))? as u32;
        for digit in number.iter_mut().rev() {
            carry += u32::from(*digit) * 58;
            *digit = carry as u8;
            carry >>= 8;
        }
        while carry > 0 {
            number.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut out = vec![0u8; zeros];
    out.extend(number);
    Ok(out)
}

/// Bitcoin's base58 (base58btc) of `bytes`: leading zero bytes become `1`s.
pub fn base58btc_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Little-endian base-58 digits of the number, built one byte at a time.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &b in &bytes[zeros..] {
        let mut carry = u32::from(b);
        for digit in digits.iter_mut() {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|&d| BASE58[d as usize] as char));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";

    #[test]
    fn reads_what_the_cid_crate_writes() {
        let cid = parse_cid(V1).unwrap();
        assert_eq!(cid.to_string(), V1);
        // The same CID in base58btc, and a CIDv0.
        let z = cid.to_string_of_base(multibase_base58()).unwrap();
        assert_eq!(parse_cid(&z).unwrap(), cid);
        let v0 = "QmY7Yh4UquoXHLPFo2XbhXkhBvFoPwmQUSa92pxnxjQuPU";
        let parsed = parse_cid(v0).unwrap();
        assert_eq!(parsed.version(), cid::Version::V0);
        assert_eq!(parsed.to_string(), v0);
        let raw = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
        assert_eq!(parse_cid(raw).unwrap().to_string(), raw);
    }

    #[test]
    fn writes_what_the_cid_crate_writes() {
        for s in [
            V1,
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
            "QmY7Yh4UquoXHLPFo2XbhXkhBvFoPwmQUSa92pxnxjQuPU",
        ] {
            let cid = parse_cid(s).unwrap();
            assert_eq!(cid_string(&cid), cid.to_string());
            assert_eq!(cid_string(&cid), s);
        }
        // Every length of tail bits, and leading zero bytes for base58.
        for bytes in [
            &b""[..],
            b"\0",
            b"\0\0\x01",
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
        ] {
            let mut b32 = String::new();
            base32_encode_into(bytes, &mut b32);
            assert_eq!(base32_decode(&b32).unwrap(), bytes, "{b32}");
            assert_eq!(
                format!("b{b32}"),
                cid::multibase::encode(cid::multibase::Base::Base32Lower, bytes)
            );
            let b58 = base58btc_encode(bytes);
            assert_eq!(
                format!("z{b58}"),
                cid::multibase::encode(cid::multibase::Base::Base58Btc, bytes)
            );
            if !bytes.is_empty() {
                assert_eq!(base58btc_decode(&b58).unwrap(), bytes, "{b58}");
            }
        }
    }

    fn multibase_base58() -> cid::multibase::Base {
        cid::multibase::Base::Base58Btc
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        for bad in [
            "",
            "b",
            "BAFYREICLP443LAVOGVHJ3D2OB2CXBFUSCNI2K5JK7BEBJZG7KHL3ESABWQ",
            "fb0171220...",
            "mAXESIE",
            "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabw1",
            "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwr",
            "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwqaa",
            "z",
            "z0OIl",
        ] {
            assert!(parse_cid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base58btc_keeps_leading_zeros() {
        assert_eq!(base58btc_decode("1112").unwrap(), [0, 0, 0, 1]);
        assert_eq!(base58btc_decode("2g").unwrap(), [0x61]);
        assert_eq!(base58btc_decode("StV1DL6CwTryKyV").unwrap(), b"hello world");
    }
}
