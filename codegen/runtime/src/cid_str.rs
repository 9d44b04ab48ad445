//! CID strings read the way the reference reads them (multiformats' `CID.parse`): base32
//! (`b…`), base58btc (`z…`), or a bare base58btc CIDv0 (`Qm…`). Other multibase prefixes are
//! refused, as the reference refuses them without a decoder for them.
//!
//! Hand-written rather than through the `cid` crate's `FromStr`, which decodes every multibase
//! (and so links a decoder for each, about 45 KB of wasm) to accept strings no atproto
//! implementation writes.

use std::fmt;

use cid::Cid;

/// Why a string is not a CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidStrError(pub String);

impl fmt::Display for CidStrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidStrError {}

fn err(why: &str) -> CidStrError {
    CidStrError(why.to_owned())
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
    let cid = Cid::read_bytes(&mut reader).map_err(|e| CidStrError(e.to_string()))?;
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
