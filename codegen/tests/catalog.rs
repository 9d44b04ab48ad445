//! The catalog's GENERATED code (the golden files, compiled here against pds-api's runtime)
//! against the interop record-data and string-format vectors, plus typed round trips.

mod support;

#[allow(dead_code)]
mod catalog {
    pub mod example {
        pub mod lexicon {
            pub mod record {
                include!("golden/record.rs");
            }
            pub mod query {
                include!("golden/query.rs");
            }
            pub mod procedure {
                include!("golden/procedure.rs");
            }
            pub mod subscription {
                include!("golden/subscription.rs");
            }
            pub mod permissionset {
                include!("golden/permissionset.rs");
            }
            include!("golden/example_lexicon_trait.rs");
        }
    }
}

use catalog::example::lexicon::record;
use pds_api::runtime::schema::validate;
use pds_api::runtime::serde_value::value_from_json;
use pds_api::runtime::value::{Map, Value};

fn record_vectors(name: &str) -> Vec<(String, Value)> {
    let text = support::interop_file(&format!("lexicon/{name}"));
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    list.into_iter()
        .map(|v| {
            let data = value_from_json(v["data"].to_string().as_bytes()).unwrap();
            (v["name"].as_str().unwrap().to_string(), data)
        })
        .collect()
}

#[test]
fn valid_record_data_passes_generated_validator() {
    let list = record_vectors("record-data-valid.json");
    assert_eq!(list.len(), 3);
    for (name, data) in list {
        if let Err(e) = record::validate(&data) {
            panic!("valid record {name:?} rejected: {e}");
        }
    }
}

#[test]
fn invalid_record_data_fails_generated_validator() {
    let list = record_vectors("record-data-invalid.json");
    assert_eq!(list.len(), 50);
    for (name, data) in list {
        assert!(
            record::validate(&data).is_err(),
            "invalid record {name:?} accepted"
        );
    }
}

fn with(field: &str, json: &str) -> Value {
    let mut m = Map::new();
    m.insert(
        "$type".into(),
        Value::String("example.lexicon.record".into()),
    );
    m.insert("integer".into(), Value::Integer(1));
    m.insert(field.into(), value_from_json(json.as_bytes()).unwrap());
    Value::Map(m)
}

#[test]
fn errors_name_the_path_and_match_reference_messages() {
    let cases = [
        (
            "graphemeString",
            r#""abcdefg-abcdefg-abcdefg""#,
            "Record/graphemeString must not be longer than 20 graphemes",
        ),
        (
            "lenString",
            r#""abc""#,
            "Record/lenString must not be shorter than 10 characters",
        ),
        (
            "rangeInteger",
            "9000",
            "Record/rangeInteger can not be greater than 20",
        ),
        (
            "lenArray",
            "[1]",
            "Record/lenArray must not have fewer than 2 elements",
        ),
        ("array", "[1, true]", "Record/array/1 must be an integer"),
        (
            "union",
            r#"{"$type": "example.lexicon.record#demoObject", "a": "x"}"#,
            "Record/union/a must be an integer",
        ),
        (
            "formats",
            r#"{"did": 5}"#,
            "Record/formats/did must be a string",
        ),
        (
            "closedUnion",
            r#"{"$type": "x.y.z"}"#,
            "Record/closedUnion $type must be one of example.lexicon.record#demoObject",
        ),
        (
            "union",
            r#"{"a": 1}"#,
            "Record/union must be an object which includes the \"$type\" property",
        ),
        (
            "enumString",
            r#""x""#,
            "Record/enumString must be one of (fish|tree|rock)",
        ),
    ];
    for (field, json, want) in cases {
        let err = record::validate(&with(field, json)).unwrap_err();
        assert_eq!(err.message, want);
    }
    let missing = value_from_json(br#"{"$type": "example.lexicon.record"}"#).unwrap();
    assert_eq!(
        record::validate(&missing).unwrap_err().message,
        "Record must have the property \"integer\""
    );
    let err = record::validate(&with(
        "union",
        r#"{"$type": "example.lexicon.record#demoObject", "a": "x"}"#,
    ))
    .unwrap_err();
    assert_eq!(err.path, "Record/union/a");
}

#[test]
fn open_union_accepts_unknown_types_and_known_values_accept_unknown_strings() {
    assert!(record::validate(&with(
        "union",
        r#"{"$type": "com.example.other", "z": true}"#
    ))
    .is_ok());
    assert!(record::validate(&with("knownString", r#""purple""#)).is_ok());
}

/// Each lexicon string format, through the generated `stringFormats` schema.
#[test]
fn string_format_vectors_through_generated_validator() {
    let formats = [
        ("did", "did"),
        ("handle", "handle"),
        ("atidentifier", "atidentifier"),
        ("nsid", "nsid"),
        ("aturi", "aturi"),
        ("cid", "cid"),
        ("datetime", "datetime"),
        ("language", "language"),
        ("uri", "uri"),
        ("tid", "tid"),
        ("recordkey", "recordkey"),
    ];
    let mut failures = Vec::new();
    for (field, file) in formats {
        let mut invalid = support::syntax_vectors(&format!("{file}_syntax_invalid.txt"));
        if file == "datetime" {
            // A lexicon datetime must also be a real instant.
            invalid.extend(support::syntax_vectors("datetime_parse_invalid.txt"));
        }
        if file == "language" {
            // Well-formed but invalid tags (repeated variants or extensions).
            invalid.extend(support::syntax_vectors("language_parse_invalid.txt"));
        }
        for (valid, list) in [
            (
                true,
                support::syntax_vectors(&format!("{file}_syntax_valid.txt")),
            ),
            (false, invalid),
        ] {
            for s in list {
                let mut m = Map::new();
                m.insert(field.to_string(), Value::String(s.clone()));
                let ok =
                    validate(&record::STRING_FORMATS_SCHEMA, &Value::Map(m), "Formats").is_ok();
                if ok != valid {
                    failures.push(format!(
                        "{field}: {s:?} should be {}",
                        if valid { "valid" } else { "invalid" }
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} format vectors misjudged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn typed_record_round_trips() {
    let json = serde_json::json!({
        "$type": "example.lexicon.record",
        "integer": 3,
        "bytes": { "$bytes": "aGVsbG8" },
        "cid-link": { "$link": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq" },
        "blob": { "$type": "blob", "mimeType": "text/plain", "size": 12,
                  "ref": { "$link": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq" } },
        "union": { "$type": "example.lexicon.record#demoObject", "a": 1 },
        "closedUnion": { "$type": "example.lexicon.record#demoObject", "b": 2 },
        "knownString": "purple",
        "enumString": "rock",
        "unknown": { "anything": [1, 2] }
    });
    let rec: record::Record = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(rec.integer, 3);
    assert!(matches!(rec.union, Some(record::RecordUnion::DemoObject(ref o)) if o.a == Some(1)));
    assert_eq!(
        rec.known_string,
        Some(record::RecordKnownString::Other("purple".into()))
    );
    assert_eq!(rec.enum_string, Some(record::RecordEnumString::Rock));
    let mut back = serde_json::to_value(&rec).unwrap();
    // The typed struct does not carry the record's own `$type`.
    back.as_object_mut()
        .unwrap()
        .insert("$type".into(), json["$type"].clone());
    assert_eq!(back, json);
}

#[test]
fn optional_nullable_fields_keep_absent_null_and_value_apart() {
    use pds_api::runtime::lex::Nullable;
    let base = serde_json::json!({ "$type": "example.lexicon.record", "integer": 1 });
    for (sent, want) in [
        (None, Nullable::Absent),
        (Some(serde_json::Value::Null), Nullable::Null),
        (
            Some(serde_json::json!("x")),
            Nullable::Value("x".to_owned()),
        ),
    ] {
        let mut json = base.clone();
        if let Some(v) = &sent {
            json["nullableString"] = v.clone();
        }
        let rec: record::Record = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(rec.nullable_string, want);
        // Written back exactly as sent: absent stays absent, `null` stays `null`.
        let mut back = serde_json::to_value(&rec).unwrap();
        back.as_object_mut()
            .unwrap()
            .insert("$type".into(), json["$type"].clone());
        assert_eq!(back, json);
    }
}

#[test]
fn unknown_union_members_round_trip_exactly() {
    let member = serde_json::json!({ "$type": "com.example.future#thing", "x": { "$bytes": "AAE" }, "y": [true, null] });
    let u: record::RecordUnion = serde_json::from_value(member.clone()).unwrap();
    assert!(matches!(u, record::RecordUnion::Unknown(_)));
    assert_eq!(serde_json::to_value(&u).unwrap(), member);
}

#[test]
fn known_type_with_bad_content_is_an_error() {
    let bad =
        serde_json::json!({ "$type": "example.lexicon.record#demoObject", "a": "not a number" });
    assert!(serde_json::from_value::<record::RecordUnion>(bad).is_err());
    let missing_type = serde_json::json!({ "a": 1 });
    assert!(serde_json::from_value::<record::RecordUnion>(missing_type).is_err());
    let outside_closed = serde_json::json!({ "$type": "com.example.other", "a": 1 });
    assert!(serde_json::from_value::<record::RecordClosedUnion>(outside_closed).is_err());
}

#[test]
fn main_is_dropped_in_written_type_and_accepted_when_read() {
    use pds_api::app::bsky::feed::post;
    let json = serde_json::json!({ "$type": "app.bsky.embed.images#main", "images": [] });
    let embed: post::RecordEmbed = serde_json::from_value(json).unwrap();
    assert!(matches!(embed, post::RecordEmbed::Images(_)));
    assert_eq!(
        serde_json::to_value(&embed).unwrap()["$type"],
        "app.bsky.embed.images"
    );
}

#[test]
fn permission_set_is_data() {
    let p = &catalog::example::lexicon::permissionset::PERMISSIONS;
    assert_eq!(p.len(), 6);
    assert_eq!(
        p[0].collection,
        &["com.example.calendar.event", "com.example.calendar.rsvp"]
    );
    assert_eq!(p[3].aud, Some("*"));
    assert!(p[4].inherit_aud);
}

/// The dispatcher's decoding ([`FromValue`], generated per type) against serde's derived
/// decoding, which the typed round trips above pin: the same value or both an error.
#[test]
fn from_value_reads_what_serde_reads() {
    use pds_api::runtime::decode::FromValue;
    fn same<T: FromValue + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        json: serde_json::Value,
    ) -> bool {
        let value = value_from_json(json.to_string().as_bytes()).unwrap();
        let ours = T::from_value(&value);
        match serde_json::from_value::<T>(json.clone()) {
            Ok(theirs) => assert_eq!(ours.as_ref().ok(), Some(&theirs), "{json}"),
            Err(e) => assert!(
                ours.is_err(),
                "{json}: serde refused ({e}), FromValue read it"
            ),
        }
        ours.is_ok()
    }
    let link = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";
    let full = serde_json::json!({
        "$type": "example.lexicon.record",
        "integer": 3,
        "bytes": { "$bytes": "aGVsbG8" },
        "cid-link": { "$link": link },
        "blob": { "$type": "blob", "mimeType": "text/plain", "size": 12, "ref": { "$link": link } },
        "union": { "$type": "example.lexicon.record#demoObject", "a": 1 },
        "closedUnion": { "$type": "example.lexicon.record#demoObject", "b": 2 },
        "knownString": "purple",
        "enumString": "rock",
        "unknown": { "anything": [1, 2] },
        "nullableString": null,
    });
    assert!(same::<record::Record>(full.clone()));
    for (field, v, ok) in [
        ("nullableString", serde_json::json!("x"), true),
        ("integer", serde_json::json!("3"), false),
        ("enumString", serde_json::json!("lizard"), false),
        ("knownString", serde_json::json!("red"), true),
        (
            "union",
            serde_json::json!({ "$type": "com.example.future#thing", "x": [true] }),
            true,
        ),
        ("union", serde_json::json!({ "a": 1 }), false),
        (
            "union",
            serde_json::json!({ "$type": "example.lexicon.record#demoObject", "a": "no" }),
            false,
        ),
        (
            "closedUnion",
            serde_json::json!({ "$type": "com.example.other", "a": 1 }),
            false,
        ),
        ("blob", serde_json::json!({ "$link": link }), false),
    ] {
        let mut json = full.clone();
        json[field] = v;
        assert_eq!(same::<record::Record>(json.clone()), ok, "{json}");
    }
    let mut absent = full.clone();
    absent.as_object_mut().unwrap().remove("nullableString");
    absent.as_object_mut().unwrap().remove("integer");
    assert!(
        !same::<record::Record>(absent.clone()),
        "integer is required"
    );
    absent["integer"] = 1.into();
    assert!(same::<record::Record>(absent));
    for (name, data) in record_vectors("record-data-valid.json") {
        let json: serde_json::Value = serde_json::from_str(&data.to_json().to_string()).unwrap();
        assert!(same::<record::Record>(json), "{name}");
    }
    use pds_api::app::bsky::feed::post;
    assert!(same::<post::RecordEmbed>(
        serde_json::json!({ "$type": "app.bsky.embed.images#main", "images": [] })
    ));
    assert!(same::<pds_api::com::atproto::repo::put_record::Input>(
        serde_json::json!({
            "repo": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "collection": "app.bsky.feed.post",
            "rkey": "self", "record": { "text": "hi" }, "swapRecord": null,
        })
    ));
    assert!(same::<pds_api::app::bsky::actor::put_preferences::Input>(
        serde_json::json!({
            "preferences": [
                { "$type": "app.bsky.actor.defs#adultContentPref", "enabled": true },
                { "$type": "app.bsky.actor.defs#savedFeedsPrefV2", "items": [
                    { "id": "3l", "type": "timeline", "value": "following", "pinned": true }
                ] },
                { "$type": "app.bsky.actor.defs#mutedWordsPref", "items": [
                    { "value": "x", "targets": ["content"], "actorTarget": "all" }
                ] },
                { "$type": "com.example.unknown#pref", "z": 1 },
            ]
        })
    ));
}
