//! The official data-model vectors: JSON <-> canonical DAG-CBOR with the expected CIDs,
//! valid documents, and invalid documents that must be refused.

mod support;

use base64::Engine;
use pds::data::{cid_for_cbor, decode, encode, Value};
use serde_json::Value as Json;

fn load(name: &str) -> Vec<Json> {
    serde_json::from_str(&support::interop_file(&format!("data-model/{name}"))).unwrap()
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

#[test]
fn fixtures_json_to_cbor_and_back() {
    let fixtures = load("data-model-fixtures.json");
    assert_eq!(fixtures.len(), 3);
    for f in &fixtures {
        let json = &f["json"];
        let expected = b64(f["cbor_base64"].as_str().unwrap());
        let value = Value::from_json(json).unwrap();
        let bytes = encode(&value);
        assert_eq!(bytes, expected, "encoding of {json}");
        assert_eq!(cid_for_cbor(&bytes).to_string(), f["cid"].as_str().unwrap());

        let decoded = decode(&expected).unwrap();
        assert_eq!(decoded, value);
        assert_eq!(&decoded.to_json(), json);

        // The serde paths agree with the hand-written codec in both directions.
        assert_eq!(serde_ipld_dagcbor::to_vec(&value).unwrap(), expected);
        let via_serde: Value = serde_ipld_dagcbor::from_slice(&expected).unwrap();
        assert_eq!(via_serde, value);
        let via_json: Value = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(via_json, value);
        assert_eq!(&serde_json::to_value(&value).unwrap(), json);
    }
}

#[test]
fn valid_documents() {
    let vectors = load("data-model-valid.json");
    assert_eq!(vectors.len(), 5);
    for v in &vectors {
        let value =
            Value::from_json_object(&v["json"]).unwrap_or_else(|e| panic!("{}: {e}", v["note"]));
        let bytes = encode(&value);
        assert_eq!(decode(&bytes).unwrap(), value, "{}", v["note"]);
    }
}

#[test]
fn invalid_documents() {
    let vectors = load("data-model-invalid.json");
    assert_eq!(vectors.len(), 12);
    for v in &vectors {
        assert!(
            Value::from_json_object(&v["json"]).is_err(),
            "accepted: {}",
            v["note"]
        );
        // The serde path refuses them as well (the top-level check is the caller's).
        if v["json"].is_object() {
            assert!(
                serde_json::from_value::<Value>(v["json"].clone()).is_err(),
                "{}",
                v["note"]
            );
        }
    }
}
