//! The official crypto vectors: signature fixtures (low-S valid, high-S and DER refused)
//! and W3C did:key derivations for both curves.

mod support;

use base64::Engine;
use pds::crypto::{CryptoError, KeyAlgorithm, PublicKey, SigningKey};
use serde_json::Value;

fn b64(s: &str) -> Vec<u8> {
    // The fixtures use standard base64 without padding.
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

#[test]
fn signature_fixtures() {
    let fixtures: Vec<Value> =
        serde_json::from_str(&support::interop_file("crypto/signature-fixtures.json")).unwrap();
    assert_eq!(fixtures.len(), 6);
    let (mut valid, mut invalid) = (0, 0);
    for f in &fixtures {
        let alg = KeyAlgorithm::from_jwt_alg(f["algorithm"].as_str().unwrap()).unwrap();
        let msg = b64(f["messageBase64"].as_str().unwrap());
        let sig = b64(f["signatureBase64"].as_str().unwrap());
        let key = PublicKey::from_did_key(f["publicKeyDid"].as_str().unwrap()).unwrap();
        assert_eq!(key.algorithm(), alg);
        assert_eq!(key.jwt_alg(), f["algorithm"].as_str().unwrap());
        assert_eq!(key.to_did_key(), f["publicKeyDid"].as_str().unwrap());
        // The fixtures' publicKeyMultibase is the legacy bare-point form.
        let legacy = f["publicKeyMultibase"].as_str().unwrap();
        assert_eq!(PublicKey::from_legacy_multibase(alg, legacy).unwrap(), key);

        let result = key.verify(&msg, &sig);
        let tags: Vec<&str> = f["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        if f["validSignature"].as_bool().unwrap() {
            assert_eq!(result, Ok(()), "{}", f["comment"]);
            valid += 1;
        } else {
            assert!(result.is_err(), "{}", f["comment"]);
            if tags.contains(&"high-s") {
                assert_eq!(result, Err(CryptoError::HighS), "{}", f["comment"]);
            }
            if tags.contains(&"der-encoded") {
                assert_eq!(
                    result,
                    Err(CryptoError::MalformedSignature),
                    "{}",
                    f["comment"]
                );
            }
            invalid += 1;
        }
    }
    assert_eq!((valid, invalid), (2, 4));
}

#[test]
fn w3c_did_key_k256() {
    let vectors: Vec<Value> =
        serde_json::from_str(&support::interop_file("crypto/w3c_didkey_K256.json")).unwrap();
    assert!(!vectors.is_empty());
    for v in &vectors {
        let key = SigningKey::from_hex(
            KeyAlgorithm::K256,
            v["privateKeyBytesHex"].as_str().unwrap(),
        )
        .unwrap();
        let did = v["publicDidKey"].as_str().unwrap();
        assert_eq!(key.public_key().to_did_key(), did);
        assert_eq!(PublicKey::from_did_key(did).unwrap(), key.public_key());
        assert_eq!(key.to_hex(), v["privateKeyBytesHex"].as_str().unwrap());
        let sig = key.sign(b"hello");
        assert_eq!(
            PublicKey::from_did_key(did).unwrap().verify(b"hello", &sig),
            Ok(())
        );
    }
}

#[test]
fn w3c_did_key_p256() {
    let vectors: Vec<Value> =
        serde_json::from_str(&support::interop_file("crypto/w3c_didkey_P256.json")).unwrap();
    assert!(!vectors.is_empty());
    for v in &vectors {
        let b58 = v["privateKeyBytesBase58"].as_str().unwrap();
        let (_, bytes) = multibase::decode(format!("z{b58}")).unwrap();
        let key = SigningKey::from_bytes(KeyAlgorithm::P256, &bytes).unwrap();
        let did = v["publicDidKey"].as_str().unwrap();
        assert_eq!(key.public_key().to_did_key(), did);
        assert_eq!(PublicKey::from_did_key(did).unwrap(), key.public_key());
        let sig = key.sign(b"hello");
        assert_eq!(
            PublicKey::from_did_key(did).unwrap().verify(b"hello", &sig),
            Ok(())
        );
    }
}

/// Signing must normalise to low-S: a flipped-S copy of our own signature is refused.
#[test]
fn own_signatures_are_low_s_and_high_s_twin_is_refused() {
    for alg in [KeyAlgorithm::K256, KeyAlgorithm::P256] {
        let key = SigningKey::generate(alg);
        for i in 0..64u32 {
            let msg = i.to_be_bytes();
            let sig = key.sign(&msg);
            let high = flip_s(alg, &sig);
            assert_eq!(
                key.public_key().verify(&msg, &high),
                Err(CryptoError::HighS)
            );
        }
    }
}

fn flip_s(alg: KeyAlgorithm, sig: &[u8; 64]) -> Vec<u8> {
    // s' = n - s, computed with the curve's own big-endian order.
    let n: [u8; 32] = match alg {
        KeyAlgorithm::K256 => {
            hex32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        }
        KeyAlgorithm::P256 => {
            hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
        }
    };
    let mut out = sig.to_vec();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = n[i] as i16 - sig[32 + i] as i16 - borrow;
        out[32 + i] = d.rem_euclid(256) as u8;
        borrow = if d < 0 { 1 } else { 0 };
    }
    out
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}
