//! App passwords as the reference makes them: 16 characters of lowercase base32
//! (`a-z2-7`, 80 random bits) in four groups, `xxxx-xxxx-xxxx-xxxx`.

use pds_api::runtime::xrpc::XrpcError;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh app password.
pub fn generate() -> Result<String, XrpcError> {
    let bytes: [u8; 10] = super::random_bytes()?;
    Ok(format_password(&bytes))
}

/// Encodes 10 bytes (80 bits, exactly 16 base32 digits: no bias) as `xxxx-xxxx-xxxx-xxxx`.
fn format_password(bytes: &[u8; 10]) -> String {
    base32_groups(bytes, 16, 4)
}

/// The first `digits` base32 digits (`a-z2-7`) of `bytes` (at most 16 bytes, and enough bits
/// for the digits), in groups of `group` joined by `-`. Every digit is 5 uniform bits: no bias.
pub(crate) fn base32_groups(bytes: &[u8], digits: usize, group: usize) -> String {
    let mut bits: u128 = 0;
    for b in bytes.iter().take(16) {
        bits = (bits << 8) | u128::from(*b);
    }
    let total = 8 * bytes.len().min(16);
    let mut out = String::with_capacity(digits + digits / group);
    for i in 0..digits.min(total / 5) {
        if i > 0 && i % group == 0 {
            out.push('-');
        }
        let digit = (bits >> (total - 5 - 5 * i)) & 31;
        out.push(BASE32[digit as usize] as char);
    }
    out
}

/// The tag an app password is found by at login: 64 bits of its SHA-256. Safe to store next
/// to the argon2 hash: the password itself has 80 random bits, out of reach of a fast hash's
/// brute force, and 64 bits leave no collisions among a handful of app passwords.
pub fn lookup_tag(password: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest([b"app-password-lookup:", password.as_bytes()].concat());
    crate::hex::encode(&digest[..8])
}

/// Whether `s` has the app-password shape: only such strings are tried against app passwords
/// at login (each try is an argon2 verification).
pub fn is_app_password_format(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, &c)| {
            if i % 5 == 4 {
                c == b'-'
            } else {
                BASE32.contains(&c)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_detection() {
        assert_eq!(format_password(&[0; 10]), "aaaa-aaaa-aaaa-aaaa");
        assert_eq!(format_password(&[0xff; 10]), "7777-7777-7777-7777");
        // 0x08 0x86 0x42 ... : first 5 bits 00001 -> 'b', next 00010 -> 'c', ...
        assert_eq!(
            &format_password(&[0x08, 0x86, 0x42, 0x98, 0xe8, 0, 0, 0, 0, 0])[..9],
            "bcde-fghi"
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let p = generate().unwrap();
            assert!(is_app_password_format(&p), "{p}");
            assert!(seen.insert(p));
        }
        for bad in [
            "aaaa-aaaa-aaaa-aaa",
            "aaaa-aaaa-aaaa-aaaaa",
            "aaaa_aaaa-aaaa-aaaa",
            "AAAA-aaaa-aaaa-aaaa",
            "aaaa-aaaa-aaaa-aa1a",
            "aaaaaaaaaaaaaaaaaaa",
            "correct horse battery",
        ] {
            assert!(!is_app_password_format(bad), "{bad}");
        }
    }
}
