//! The typed data-model helpers pick the JSON or IPLD form from the serializer.

use pds::data::{cid_for_raw, decode, encode, Map, Value};
use pds_api::runtime::value::{BlobRef, Bytes, CidLink};
use serde_json::json;

#[test]
fn cid_link_both_forms() {
    let cid = cid_for_raw(b"blob");
    let link = CidLink(cid);
    assert_eq!(
        serde_json::to_value(link).unwrap(),
        json!({ "$link": cid.to_string() })
    );
    let back: CidLink = serde_json::from_value(json!({ "$link": cid.to_string() })).unwrap();
    assert_eq!(back, link);
    assert!(
        serde_json::from_value::<CidLink>(json!({ "$link": cid.to_string(), "x": 1 })).is_err()
    );
    assert!(serde_json::from_value::<CidLink>(json!({ "$link": "nope" })).is_err());
    assert!(serde_json::from_value::<CidLink>(json!(cid.to_string())).is_err());

    let cbor = serde_ipld_dagcbor::to_vec(&link).unwrap();
    assert_eq!(cbor, encode(&Value::Link(cid)));
    assert_eq!(
        serde_ipld_dagcbor::from_slice::<CidLink>(&cbor).unwrap(),
        link
    );
}

#[test]
fn bytes_both_forms() {
    let b = Bytes(vec![0, 1, 2, 250]);
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        json!({ "$bytes": "AAEC+g" })
    );
    assert_eq!(
        serde_json::from_value::<Bytes>(json!({ "$bytes": "AAEC+g" })).unwrap(),
        b
    );
    // Padding is accepted on input.
    assert_eq!(
        serde_json::from_value::<Bytes>(json!({ "$bytes": "AAEC+g==" })).unwrap(),
        b
    );
    assert!(serde_json::from_value::<Bytes>(json!({ "$bytes": "AAEC-g" })).is_err());
    let cbor = serde_ipld_dagcbor::to_vec(&b).unwrap();
    assert_eq!(cbor, encode(&Value::Bytes(b.0.clone())));
    assert_eq!(serde_ipld_dagcbor::from_slice::<Bytes>(&cbor).unwrap(), b);
}

#[test]
fn blob_ref_both_forms() {
    let cid = cid_for_raw(b"image");
    let blob = BlobRef {
        cid,
        mime_type: "image/png".into(),
        size: 5,
    };
    let json = json!({"$type": "blob", "ref": {"$link": cid.to_string()}, "mimeType": "image/png", "size": 5});
    assert_eq!(serde_json::to_value(&blob).unwrap(), json);
    assert_eq!(
        serde_json::from_value::<BlobRef>(json.clone()).unwrap(),
        blob
    );
    let value = Value::from_json(&json).unwrap();
    assert_eq!(value, blob.to_value());
    assert_eq!(value.as_blob_ref(), Some(blob.clone()));
    assert!(!value.is_legacy_blob());

    let cbor = serde_ipld_dagcbor::to_vec(&blob).unwrap();
    assert_eq!(cbor, encode(&value));
    assert_eq!(
        serde_ipld_dagcbor::from_slice::<BlobRef>(&cbor).unwrap(),
        blob
    );
    assert_eq!(decode(&cbor).unwrap().as_blob_ref(), Some(blob));

    let legacy = json!({"cid": cid.to_string(), "mimeType": "image/png"});
    assert!(serde_json::from_value::<BlobRef>(legacy.clone()).is_err());
    let legacy = Value::from_json(&legacy).unwrap();
    assert!(legacy.is_legacy_blob());
    assert_eq!(legacy.as_blob_ref(), None);
    assert!(serde_json::from_value::<BlobRef>(
        json!({"$type": "blob", "ref": {"$link": cid.to_string()}, "mimeType": "a/b"})
    )
    .is_err());
}

#[test]
fn value_ipld_serde_rejects_floats() {
    // 1.5 as a CBOR double inside a map.
    let bytes = [0xa1, 0x61, b'a', 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0];
    assert!(serde_ipld_dagcbor::from_slice::<Value>(&bytes).is_err());
    let mut m = Map::new();
    m.insert("$type".into(), Value::String(String::new()));
    assert!(Value::from_json(&Value::Map(m).to_json()).is_err());
    assert!(Value::from_json(&json!({"a": 1.5})).is_err());
    assert_eq!(Value::from_json(&json!(-7.0)).unwrap(), Value::Integer(-7));
    assert!(Value::from_json(&json!(u64::MAX)).is_err());
}
