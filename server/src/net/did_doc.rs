//! DID documents in the small typed form atproto uses: the handle (`alsoKnownAs`), the repo
//! signing key (`#atproto`), the PDS (`#atproto_pds`) and any other service by id (`#atproto_labeler`,
//! `#bsky_appview`, `#bsky_chat`, ... for the `atproto-proxy` header).

use pds_api::runtime::syntax::{Did, Handle};
use serde_json::Value;

use crate::crypto::{KeyAlgorithm, PublicKey};

/// The service id of an account's PDS.
pub const PDS_SERVICE_ID: &str = "atproto_pds";
/// The service type an account's PDS entry must have.
pub const PDS_SERVICE_TYPE: &str = "AtprotoPersonalDataServer";
/// The verification method id of the repo signing key.
pub const SIGNING_KEY_ID: &str = "atproto";

/// A DID document, reduced to what atproto reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDocument {
    /// The DID the document describes.
    pub id: Did,
    /// `alsoKnownAs`, as written.
    pub also_known_as: Vec<String>,
    /// The verification methods that have a usable shape.
    pub verification_methods: Vec<VerificationMethod>,
    /// The services whose endpoint is a URL string.
    pub services: Vec<Service>,
}

/// One entry of `verificationMethod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationMethod {
    /// As written: `#atproto` or `did:...#atproto`.
    pub id: String,
    /// e.g. `Multikey`.
    pub kind: String,
    /// `publicKeyMultibase`, when present.
    pub public_key_multibase: Option<String>,
}

/// One entry of `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// As written: `#atproto_pds` or `did:...#atproto_pds`.
    pub id: String,
    /// e.g. `AtprotoPersonalDataServer`.
    pub kind: String,
    /// The endpoint URL.
    pub endpoint: String,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedDocument(pub String);

impl std::fmt::Display for MalformedDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed DID document: {}", self.0)
    }
}

impl std::error::Error for MalformedDocument {}

impl DidDocument {
    /// Parses a document from its JSON bytes. Entries of `verificationMethod` and `service` that
    /// lack the string fields atproto needs are skipped (other DID methods' extensions), but the
    /// document's own shape (an object with a DID `id`, arrays where arrays belong) is required.
    pub fn parse(json: &[u8]) -> Result<DidDocument, MalformedDocument> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| MalformedDocument(format!("not JSON: {e}")))?;
        DidDocument::from_value(&value)
    }

    /// Reads a document from parsed JSON (e.g. a PLC audit log entry or an API response).
    pub fn from_value(value: &Value) -> Result<DidDocument, MalformedDocument> {
        let bad = |why: &str| MalformedDocument(why.to_owned());
        let doc = value.as_object().ok_or_else(|| bad("not an object"))?;
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no id"))?;
        let id = Did::new(id).map_err(|e| MalformedDocument(format!("id is not a DID: {e}")))?;
        let array = |name: &str| -> Result<&[Value], MalformedDocument> {
            match doc.get(name) {
                None | Some(Value::Null) => Ok(&[]),
                Some(Value::Array(items)) => Ok(items.as_slice()),
                Some(_) => Err(MalformedDocument(format!("{name} is not an array"))),
            }
        };
        let also_known_as = array("alsoKnownAs")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("alsoKnownAs holds a non-string"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let verification_methods = array("verificationMethod")?
            .iter()
            .filter_map(|m| {
                Some(VerificationMethod {
                    id: text(m, "id")?,
                    kind: text(m, "type")?,
                    public_key_multibase: text(m, "publicKeyMultibase"),
                })
            })
            .collect();
        let services = array("service")?
            .iter()
            .filter_map(|s| {
                Some(Service {
                    id: text(s, "id")?,
                    kind: text(s, "type")?,
                    endpoint: text(s, "serviceEndpoint")?,
                })
            })
            .collect();
        Ok(DidDocument {
            id,
            also_known_as,
            verification_methods,
            services,
        })
    }

    /// Whether `id` (`#fragment` or `did...#fragment`) names `fragment` in this document.
    fn names(&self, id: &str, fragment: &str) -> bool {
        match id.split_once('#') {
            Some(("", f)) => f == fragment,
            Some((did, f)) => f == fragment && did == self.id.as_str(),
            None => false,
        }
    }

    /// The handle the document claims: the first `at://` entry of `alsoKnownAs` that is a valid
    /// handle. (A claim only: it counts once the handle resolves back to this DID.)
    pub fn handle(&self) -> Option<Handle> {
        self.also_known_as
            .iter()
            .filter_map(|aka| aka.strip_prefix("at://"))
            .find_map(|h| Handle::new(h.to_ascii_lowercase()).ok())
    }

    /// The repo signing key (`#atproto`): Multikey, or the older typed secp256k1/P-256 forms.
    pub fn signing_key(&self) -> Option<PublicKey> {
        let method = self
            .verification_methods
            .iter()
            .find(|m| self.names(&m.id, SIGNING_KEY_ID))?;
        let multibase = method.public_key_multibase.as_deref()?;
        match method.kind.as_str() {
            "Multikey" => PublicKey::from_multibase(multibase).ok(),
            "EcdsaSecp256k1VerificationKey2019" => {
                PublicKey::from_legacy_multibase(KeyAlgorithm::K256, multibase).ok()
            }
            "EcdsaSecp256r1VerificationKey2019" => {
                PublicKey::from_legacy_multibase(KeyAlgorithm::P256, multibase).ok()
            }
            _ => None,
        }
    }

    /// The service with id `#fragment` (pass it with or without the `#`).
    pub fn service(&self, fragment: &str) -> Option<&Service> {
        let fragment = fragment.strip_prefix('#').unwrap_or(fragment);
        self.services.iter().find(|s| self.names(&s.id, fragment))
    }

    /// The endpoint of the service `#fragment` if it has type `kind` and an http(s) URL: what
    /// the `atproto-proxy` header (`did#fragment`) resolves to.
    pub fn service_endpoint(&self, fragment: &str, kind: &str) -> Option<&str> {
        self.service(fragment)
            .filter(|s| s.kind == kind)
            .map(|s| s.endpoint.as_str())
            .filter(|e| is_http_url(e))
    }

    /// The account's PDS URL (`#atproto_pds`, type `AtprotoPersonalDataServer`).
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.service_endpoint(PDS_SERVICE_ID, PDS_SERVICE_TYPE)
    }

    /// The document as JSON again, with what atproto reads of it (the parts [`DidDocument`]
    /// drops, other methods' extensions, are not kept in the cache).
    pub fn to_json(&self) -> Value {
        let did = self.id.as_str();
        let methods: Vec<Value> = self
            .verification_methods
            .iter()
            .map(|m| {
                let mut method =
                    serde_json::json!({ "id": m.id, "type": m.kind, "controller": did });
                if let Some(key) = &m.public_key_multibase {
                    method["publicKeyMultibase"] = key.as_str().into();
                }
                method
            })
            .collect();
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| serde_json::json!({ "id": s.id, "type": s.kind, "serviceEndpoint": s.endpoint }))
            .collect();
        serde_json::json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
                "https://w3id.org/security/suites/secp256k1-2019/v1"
            ],
            "id": did,
            "alsoKnownAs": self.also_known_as,
            "verificationMethod": methods,
            "service": services,
        })
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;

    fn doc(key: &str) -> Value {
        serde_json::json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            "alsoKnownAs": ["https://not-a-handle.example", "at://Alice.Example.com"],
            "verificationMethod": [
                { "id": "did:plc:other#atproto", "type": "Multikey", "controller": "x",
                  "publicKeyMultibase": "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme" },
                { "id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz#atproto", "type": "Multikey",
                  "controller": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "publicKeyMultibase": key },
                { "id": "#weird" }
            ],
            "service": [
                { "id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                  "serviceEndpoint": "https://pds.example.com" },
                { "id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz#atproto_labeler",
                  "type": "AtprotoLabeler", "serviceEndpoint": "https://labeler.example.com" },
                { "id": "#bsky_chat", "type": "BskyChatService",
                  "serviceEndpoint": { "not": "a string" } },
                { "id": "#bsky_appview", "type": "BskyAppView", "serviceEndpoint": "ftp://x" }
            ]
        })
    }

    #[test]
    fn the_atproto_parts_are_read() {
        let key = SigningKey::from_bytes(KeyAlgorithm::K256, &[7; 32])
            .unwrap()
            .public_key();
        let d = DidDocument::from_value(&doc(&key.to_multibase())).unwrap();
        assert_eq!(d.id.as_str(), "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
        assert_eq!(d.handle().unwrap().as_str(), "alice.example.com");
        assert_eq!(d.signing_key(), Some(key));
        assert_eq!(d.pds_endpoint(), Some("https://pds.example.com"));
        assert_eq!(
            d.service_endpoint("#atproto_labeler", "AtprotoLabeler"),
            Some("https://labeler.example.com")
        );
        assert_eq!(
            d.service_endpoint("atproto_labeler", "AtprotoPersonalDataServer"),
            None
        );
        assert!(
            d.service("bsky_chat").is_none(),
            "non-string endpoint skipped"
        );
        assert_eq!(d.service_endpoint("bsky_appview", "BskyAppView"), None);
        assert_eq!(d.verification_methods.len(), 2);
    }

    #[test]
    fn legacy_key_forms_are_read() {
        let key = SigningKey::from_bytes(KeyAlgorithm::P256, &[3; 32])
            .unwrap()
            .public_key();
        let raw = multibase::encode(multibase::Base::Base58Btc, key.to_sec1_compressed());
        let mut v = doc("");
        v["verificationMethod"] = serde_json::json!([{
            "id": "#atproto", "type": "EcdsaSecp256r1VerificationKey2019",
            "controller": "x", "publicKeyMultibase": raw
        }]);
        assert_eq!(
            DidDocument::from_value(&v).unwrap().signing_key(),
            Some(key)
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"alsoKnownAs": []}"#,
            br#"{"id": "alice"}"#,
            br#"{"id": "did:plc:abc", "service": {}}"#,
            br#"{"id": "did:plc:abc", "alsoKnownAs": [1]}"#,
        ] {
            assert!(
                DidDocument::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let minimal = DidDocument::parse(br#"{"id": "did:web:example.com"}"#).unwrap();
        assert_eq!(minimal.handle(), None);
        assert_eq!(minimal.signing_key(), None);
        assert_eq!(minimal.pds_endpoint(), None);
    }
}
