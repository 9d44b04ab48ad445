//! did:plc operations: the signed operation format of the PLC directory, its canonical DAG-CBOR
//! encoding, signatures and CIDs, and the DID a genesis operation names.
//!
//! An operation is signed over the DAG-CBOR of everything but `sig`, with a rotation key listed
//! by the operation it follows (`prev`, the CID of that operation); `sig` is the 64-byte low-S
//! `r||s` in unpadded base64url. The DID of a log is `did:plc:` and the first 24 characters of
//! the lowercase base32 SHA-256 of its signed genesis operation.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cid::Cid;
use pds_api::runtime::value::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::{PublicKey, SigningKey};
use crate::data::{cbor, cid::cid_for_cbor};

/// The largest signed operation the directory accepts, as DAG-CBOR.
pub const MAX_OPERATION_BYTES: usize = 7500;
/// The `type` of an operation that sets a document.
pub const OPERATION_TYPE: &str = "plc_operation";
/// The `type` of the operation that ends a DID.
pub const TOMBSTONE_TYPE: &str = "plc_tombstone";
/// The `type` of the first version's genesis operations, still found at the start of old logs.
pub const LEGACY_CREATE_TYPE: &str = "create";
/// The service id and type of an atproto PDS in a document.
pub const PDS_SERVICE_ID: &str = "atproto_pds";
/// See [`PDS_SERVICE_ID`].
pub const PDS_SERVICE_TYPE: &str = "AtprotoPersonalDataServer";
/// The verification method id of the repository signing key.
pub const SIGNING_METHOD_ID: &str = "atproto";

/// Why an operation is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlcError {
    /// Not an operation of a known shape (the message says what is wrong).
    Malformed(String),
    /// The DID has been tombstoned: no operation can follow.
    Tombstoned,
    /// No listed rotation key verifies the signature.
    BadSignature,
    /// Larger than [`MAX_OPERATION_BYTES`].
    TooLarge(usize),
}

impl fmt::Display for PlcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlcError::Malformed(why) => write!(f, "malformed PLC operation: {why}"),
            PlcError::Tombstoned => f.write_str("the DID is tombstoned"),
            PlcError::BadSignature => {
                f.write_str("no rotation key of the DID verifies the operation's signature")
            }
            PlcError::TooLarge(n) => write!(
                f,
                "the operation is {n} bytes as DAG-CBOR, over the directory's {MAX_OPERATION_BYTES}"
            ),
        }
    }
}

impl std::error::Error for PlcError {}

/// A service of a document: what it is and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The service type, e.g. [`PDS_SERVICE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Its URL.
    pub endpoint: String,
}

/// What an operation sets: the whole state of a DID (everything but `type`, `prev` and `sig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentData {
    /// `did:key`s that may sign the next operation, highest priority first.
    pub rotation_keys: Vec<String>,
    /// Verification methods by id (`atproto`: the repository signing key), as `did:key`s.
    pub verification_methods: BTreeMap<String, String>,
    /// Other names of the subject, `at://<handle>` first.
    pub also_known_as: Vec<String>,
    /// Services by id (`atproto_pds`).
    pub services: BTreeMap<String, Service>,
}

impl DocumentData {
    /// The `did:key` of the repository signing key, if any.
    pub fn signing_key(&self) -> Option<&str> {
        self.verification_methods
            .get(SIGNING_METHOD_ID)
            .map(String::as_str)
    }

    /// The handle the document claims first (`at://<handle>`), if any.
    pub fn handle(&self) -> Option<&str> {
        self.also_known_as
            .iter()
            .find_map(|aka| aka.strip_prefix("at://"))
    }

    /// The atproto PDS endpoint, if the service is there with its type.
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.services
            .get(PDS_SERVICE_ID)
            .filter(|s| s.kind == PDS_SERVICE_TYPE)
            .map(|s| s.endpoint.as_str())
    }
}

/// An operation of a DID's log, as the directory serves it, with its CID.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedOperation {
    /// The CID of its DAG-CBOR encoding: what the next operation names as `prev`.
    pub cid: Cid,
    /// The state it leaves (a legacy genesis operation normalized to the current shape), or
    /// `None` for a tombstone.
    pub data: Option<DocumentData>,
}

impl LoggedOperation {
    /// Reads an operation as the directory returns it (`GET /<did>/log/last`).
    pub fn from_json(json: &serde_json::Value) -> Result<LoggedOperation, PlcError> {
        let cid = cid_for_cbor(&encode_json(json)?);
        let kind = json
            .get("type")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| PlcError::Malformed("no type".into()))?;
        let data = match kind {
            OPERATION_TYPE => Some(Operation::from_json(json)?.data),
            TOMBSTONE_TYPE => None,
            LEGACY_CREATE_TYPE => Some(legacy_create_data(json)?),
            other => return Err(PlcError::Malformed(format!("unknown type {other:?}"))),
        };
        Ok(LoggedOperation { cid, data })
    }
}

/// The document data of a legacy `create` operation, in the current shape: the recovery key
/// ranks above the signing key, which also rotates.
fn legacy_create_data(json: &serde_json::Value) -> Result<DocumentData, PlcError> {
    let field = |name: &str| {
        json.get(name)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| PlcError::Malformed(format!("a create operation without {name}")))
    };
    let signing_key = field("signingKey")?.to_owned();
    let handle = field("handle")?;
    let endpoint = field("service")?;
    Ok(DocumentData {
        rotation_keys: vec![field("recoveryKey")?.to_owned(), signing_key.clone()],
        verification_methods: BTreeMap::from([(SIGNING_METHOD_ID.to_owned(), signing_key)]),
        also_known_as: vec![format!("at://{handle}")],
        services: BTreeMap::from([(
            PDS_SERVICE_ID.to_owned(),
            Service {
                kind: PDS_SERVICE_TYPE.to_owned(),
                endpoint: endpoint.to_owned(),
            },
        )]),
    })
}

/// A `plc_operation`: the data it sets, the operation it follows (none for a genesis), and its
/// signature once signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The state it sets.
    pub data: DocumentData,
    /// The CID of the operation it follows, as a string; `None` for a genesis operation.
    pub prev: Option<String>,
    /// The signature, unpadded base64url; `None` until signed.
    pub sig: Option<String>,
}

/// The wire shape of [`Operation`] (serde keeps the field names and the nullable `prev`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(flatten)]
    data: DocumentData,
    prev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

impl Operation {
    /// An unsigned operation setting `data` after the operation `prev`.
    pub fn new(data: DocumentData, prev: Option<Cid>) -> Operation {
        Operation {
            data,
            prev: prev.map(|c| crate::data::cid_string(&c)),
            sig: None,
        }
    }

    /// Reads a `plc_operation` from its JSON form (signed or not).
    pub fn from_json(json: &serde_json::Value) -> Result<Operation, PlcError> {
        // `deny_unknown_fields` does not combine with `flatten`: compare the keys by hand.
        let known = [
            "type",
            "rotationKeys",
            "verificationMethods",
            "alsoKnownAs",
            "services",
            "prev",
            "sig",
        ];
        let object = json
            .as_object()
            .ok_or_else(|| PlcError::Malformed("not an object".into()))?;
        if let Some(extra) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(PlcError::Malformed(format!("unknown field {extra:?}")));
        }
        if !object.contains_key("prev") {
            return Err(PlcError::Malformed("no prev (null for a genesis)".into()));
        }
        let wire: OperationJson =
            serde_json::from_value(json.clone()).map_err(|e| PlcError::Malformed(e.to_string()))?;
        if wire.kind != OPERATION_TYPE {
            return Err(PlcError::Malformed(format!(
                "type {:?}, not {OPERATION_TYPE}",
                wire.kind
            )));
        }
        Ok(Operation {
            data: wire.data,
            prev: wire.prev,
            sig: wire.sig,
        })
    }

    /// The JSON form, as the directory takes it (with `sig` once signed).
    pub fn to_json(&self) -> serde_json::Value {
        let wire = OperationJson {
            kind: OPERATION_TYPE.to_owned(),
            data: self.data.clone(),
            prev: self.prev.clone(),
            sig: self.sig.clone(),
        };
        // Strings, lists and maps of strings always serialize.
        serde_json::to_value(wire).unwrap_or(serde_json::Value::Null)
    }

    /// The bytes a signature covers: the DAG-CBOR of the operation without `sig`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, PlcError> {
        let unsigned = Operation {
            sig: None,
            ..self.clone()
        };
        encode_json(&unsigned.to_json())
    }

    /// Signs with `key` (a rotation key of the operation named by `prev`).
    pub fn sign(mut self, key: &SigningKey) -> Result<Operation, PlcError> {
        let sig = key.sign(&self.signing_bytes()?);
        self.sig = Some(URL_SAFE_NO_PAD.encode(sig));
        let size = encode_json(&self.to_json())?.len();
        if size > MAX_OPERATION_BYTES {
            return Err(PlcError::TooLarge(size));
        }
        Ok(self)
    }

    /// The index in `rotation_keys` of the key whose signature this is.
    pub fn verify(&self, rotation_keys: &[String]) -> Result<usize, PlcError> {
        let sig = self.sig.as_deref().ok_or(PlcError::BadSignature)?;
        // The strict decoder refuses padding and stray trailing bits: one encoding per signature.
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| PlcError::BadSignature)?;
        let signed = self.signing_bytes()?;
        rotation_keys
            .iter()
            .position(|did_key| {
                PublicKey::from_did_key(did_key).is_ok_and(|key| key.verify(&signed, &sig).is_ok())
            })
            .ok_or(PlcError::BadSignature)
    }

    /// The CID of the signed operation: what the next operation names as `prev`.
    pub fn cid(&self) -> Result<Cid, PlcError> {
        Ok(cid_for_cbor(&encode_json(&self.to_json())?))
    }

    /// The DID a signed genesis operation creates.
    pub fn genesis_did(&self) -> Result<String, PlcError> {
        let digest = Sha256::digest(encode_json(&self.to_json())?);
        let mut did = String::from("did:plc:");
        pds_api::runtime::cid_str::base32_encode_into(&digest, &mut did);
        // 24 base32 characters are 120 bits.
        did.truncate("did:plc:".len() + 24);
        Ok(did)
    }
}

/// The canonical DAG-CBOR of an operation's JSON form (strings, lists, maps and null only).
fn encode_json(json: &serde_json::Value) -> Result<Vec<u8>, PlcError> {
    let value = Value::from_json(json).map_err(|e| PlcError::Malformed(e.to_string()))?;
    Ok(cbor::encode(&value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyAlgorithm;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(KeyAlgorithm::K256, &[byte; 32]).unwrap()
    }

    fn data(rotation: &[&SigningKey]) -> DocumentData {
        DocumentData {
            rotation_keys: rotation
                .iter()
                .map(|k| k.public_key().to_did_key())
                .collect(),
            verification_methods: BTreeMap::from([(
                "atproto".to_owned(),
                key(9).public_key().to_did_key(),
            )]),
            also_known_as: vec!["at://alice.test".into()],
            services: BTreeMap::from([(
                "atproto_pds".to_owned(),
                Service {
                    kind: PDS_SERVICE_TYPE.into(),
                    endpoint: "https://pds.test".into(),
                },
            )]),
        }
    }

    #[test]
    fn genesis_then_update_chain_and_verify() {
        let (recovery, rotation) = (key(1), key(2));
        let genesis = Operation::new(data(&[&recovery, &rotation]), None)
            .sign(&rotation)
            .unwrap();
        assert_eq!(
            genesis.verify(&genesis.data.rotation_keys).unwrap(),
            1,
            "the second key signed"
        );
        let did = genesis.genesis_did().unwrap();
        assert!(did.starts_with("did:plc:") && did.len() == 32, "{did}");
        assert!(did[8..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));

        let mut next = data(&[&recovery, &rotation]);
        next.also_known_as = vec!["at://bob.test".into()];
        let update = Operation::new(next, Some(genesis.cid().unwrap()))
            .sign(&rotation)
            .unwrap();
        assert_eq!(update.prev, Some(genesis.cid().unwrap().to_string()));
        // Verified against the keys of the operation it follows, as the directory does.
        assert_eq!(update.verify(&genesis.data.rotation_keys).unwrap(), 1);
        assert_eq!(
            update.verify(&[key(3).public_key().to_did_key()]),
            Err(PlcError::BadSignature)
        );

        // The JSON form round-trips, and an edited operation no longer verifies.
        let json = update.to_json();
        assert_eq!(json["type"], "plc_operation");
        let back = Operation::from_json(&json).unwrap();
        assert_eq!(back, update);
        let logged = LoggedOperation::from_json(&json).unwrap();
        assert_eq!(logged.cid, update.cid().unwrap());
        assert_eq!(logged.data.as_ref(), Some(&update.data));
        let mut tampered = back;
        tampered.data.also_known_as = vec!["at://mallory.test".into()];
        assert_eq!(
            tampered.verify(&genesis.data.rotation_keys),
            Err(PlcError::BadSignature)
        );
    }

    #[test]
    fn genesis_carries_a_null_prev_and_signatures_are_strict() {
        let rotation = key(2);
        let genesis = Operation::new(data(&[&rotation]), None)
            .sign(&rotation)
            .unwrap();
        let json = genesis.to_json();
        assert!(json["prev"].is_null());
        let sig = genesis.sig.clone().unwrap();
        assert_eq!(sig.len(), 86, "64 bytes, unpadded");
        // Padding, or a different last character with the same leading bits, is refused.
        for bad in [format!("{sig}=="), {
            let mut s = sig.clone();
            let last = s.pop().unwrap();
            s.push(if last == 'A' { 'B' } else { 'A' });
            s
        }] {
            let forged = Operation {
                sig: Some(bad),
                ..genesis.clone()
            };
            assert_eq!(
                forged.verify(&genesis.data.rotation_keys),
                Err(PlcError::BadSignature)
            );
        }
        let mut without_prev = json.clone();
        without_prev.as_object_mut().unwrap().remove("prev");
        assert!(Operation::from_json(&without_prev).is_err());
        let mut extra = json;
        extra["handle"] = "x".into();
        assert!(Operation::from_json(&extra).is_err());
    }

    #[test]
    fn logged_tombstones_and_legacy_creates() {
        let tomb = serde_json::json!({ "type": "plc_tombstone", "prev": "bafyreib", "sig": "x" });
        assert_eq!(LoggedOperation::from_json(&tomb).unwrap().data, None);
        let legacy = serde_json::json!({
            "type": "create",
            "signingKey": "did:key:zSigning",
            "recoveryKey": "did:key:zRecovery",
            "handle": "alice.test",
            "service": "https://pds.test",
            "prev": null,
            "sig": "x",
        });
        let data = LoggedOperation::from_json(&legacy).unwrap().data.unwrap();
        assert_eq!(
            data.rotation_keys,
            vec!["did:key:zRecovery", "did:key:zSigning"]
        );
        assert_eq!(data.signing_key(), Some("did:key:zSigning"));
        assert_eq!(data.handle(), Some("alice.test"));
        assert_eq!(data.pds_endpoint(), Some("https://pds.test"));
    }

    #[test]
    fn oversized_operations_are_refused() {
        let rotation = key(2);
        let mut big = data(&[&rotation]);
        big.also_known_as = (0..100).map(|i| format!("at://{i:0>80}.test")).collect();
        assert!(matches!(
            Operation::new(big, None).sign(&rotation),
            Err(PlcError::TooLarge(_))
        ));
    }
}
