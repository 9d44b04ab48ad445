//! The parser against the interop lexicon vectors, the workspace lexicons, and error paths.

mod support;

use pds_codegen::model::{Def, Format, Kind, RecordKey};
use pds_codegen::parse::{parse_corpus, parse_document};
use serde_json::json;

fn vectors(name: &str) -> Vec<(String, serde_json::Value)> {
    let text = support::interop_file(&format!("lexicon/{name}"));
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(!list.is_empty());
    list.into_iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["lexicon"].clone(),
            )
        })
        .collect()
}

#[test]
fn valid_lexicon_vectors_parse() {
    for (name, doc) in vectors("lexicon-valid.json") {
        let files = vec![(format!("vector {name}"), doc)];
        if let Err(e) = parse_corpus(&files) {
            panic!("valid vector {name:?} rejected: {e}");
        }
    }
}

#[test]
fn invalid_lexicon_vectors_are_rejected() {
    let list = vectors("lexicon-invalid.json");
    assert_eq!(list.len(), 7);
    for (name, doc) in list {
        let files = vec![(format!("vector {name}"), doc)];
        assert!(
            parse_corpus(&files).is_err(),
            "invalid vector {name:?} accepted"
        );
    }
}

#[test]
fn every_workspace_lexicon_parses_and_resolves() {
    let root = pds_codegen::workspace_root();
    let files = pds_codegen::load_dir(&root.join("lexicons"), "lexicons/").unwrap();
    // 387 from @atproto/api (lexicons/SOURCE.md), and this project's own (lexicons/dev/).
    assert_eq!(files.len(), 396);
    let corpus = parse_corpus(&files).unwrap();
    assert_eq!(corpus.docs.len(), 396);
    let records = corpus
        .docs
        .values()
        .filter(|d| matches!(d.defs.get("main"), Some(Def::Record(_))))
        .count();
    assert_eq!(records, 22);
    // A few facts that must survive parsing.
    let post = &corpus.docs["app.bsky.feed.post"];
    let Some(Def::Record(r)) = post.defs.get("main") else {
        panic!("post is a record")
    };
    assert_eq!(r.key, RecordKey::Tid);
    let Kind::String(text) = &r.record.properties["text"].kind else {
        panic!()
    };
    assert_eq!(
        (text.max_length, text.max_graphemes),
        (Some(3000), Some(300))
    );
    let Kind::Union { refs, closed } = &r.record.properties["embed"].kind else {
        panic!()
    };
    assert!(!closed);
    assert!(refs.contains(&"app.bsky.embed.images#main".to_string()));
    let Kind::String(created) = &r.record.properties["createdAt"].kind else {
        panic!()
    };
    assert_eq!(created.format, Some(Format::Datetime));
}

fn err_of(doc: serde_json::Value) -> String {
    parse_corpus(&[("lexicons/com/x.json".to_string(), doc)])
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_the_file_and_json_path() {
    let doc = json!({
        "lexicon": 1, "id": "com.example.x",
        "defs": { "main": { "type": "procedure", "input": { "encoding": "application/json",
            "schema": { "type": "object", "properties": { "foo": { "type": "strin" } } } } } }
    });
    assert_eq!(
        err_of(doc),
        r#"lexicons/com/x.json: defs.main.input.schema.properties.foo: unknown type "strin""#
    );

    let doc = json!({ "lexicon": 1, "id": "com.example.x",
        "defs": { "main": { "type": "object", "properties": { "a": { "type": "ref", "ref": "#missing" } } } } });
    assert_eq!(
        err_of(doc),
        r#"lexicons/com/x.json: defs.main.properties.a.ref: unresolved reference "com.example.x#missing""#
    );

    let doc = json!({ "lexicon": 1, "id": "com.example.x",
        "defs": { "main": { "type": "string", "format": "email" } } });
    assert_eq!(
        err_of(doc),
        r#"lexicons/com/x.json: defs.main.format: unknown string format "email""#
    );

    let doc = json!({ "lexicon": 2, "id": "com.example.x", "defs": {} });
    assert_eq!(
        err_of(doc),
        "lexicons/com/x.json: lexicon: must be 1, found 2"
    );

    let doc = json!({ "lexicon": 1, "id": "com.example.x",
        "defs": { "main": { "type": "object", "required": ["nope"], "properties": {} } } });
    assert_eq!(
        err_of(doc),
        r#"lexicons/com/x.json: defs.main.required.0: required property "nope" is not defined"#
    );

    let doc = json!({ "lexicon": 1, "id": "com.example.x",
        "defs": { "main": { "type": "record", "key": "uuid", "record": { "type": "object" } } } });
    assert_eq!(
        err_of(doc),
        r#"lexicons/com/x.json: defs.main.key: unknown record key type "uuid""#
    );
}

#[test]
fn references_are_qualified() {
    let doc = json!({ "lexicon": 1, "id": "com.example.refs", "defs": {
        "main": { "type": "object", "properties": {
            "local": { "type": "ref", "ref": "#other" },
            "full": { "type": "ref", "ref": "com.example.refs#other" },
            "bare": { "type": "ref", "ref": "com.example.refs" },
            "u": { "type": "union", "refs": ["#other", "com.example.refs"], "closed": true }
        } },
        "other": { "type": "token" }
    } });
    let (d, refs) = parse_document("x.json", &doc).unwrap();
    assert_eq!(refs.len(), 5);
    let Some(Def::Type(t)) = d.defs.get("main") else {
        panic!()
    };
    let Kind::Object(o) = &t.kind else { panic!() };
    assert_eq!(
        o.properties["local"].kind,
        Kind::Ref("com.example.refs#other".into())
    );
    assert_eq!(
        o.properties["full"].kind,
        Kind::Ref("com.example.refs#other".into())
    );
    assert_eq!(
        o.properties["bare"].kind,
        Kind::Ref("com.example.refs#main".into())
    );
    assert_eq!(
        o.properties["u"].kind,
        Kind::Union {
            refs: vec![
                "com.example.refs#other".into(),
                "com.example.refs#main".into()
            ],
            closed: true
        }
    );
}

#[test]
fn catalog_parses_with_every_feature() {
    let (corpus, ids) = support::catalog_corpus();
    assert_eq!(ids.len(), 5);
    let Some(Def::PermissionSet(p)) = corpus.docs["example.lexicon.permissionset"]
        .defs
        .get("main")
    else {
        panic!()
    };
    assert_eq!(p.permissions.len(), 6);
    assert_eq!(p.permissions[4].lxm, vec!["*".to_string()]);
    assert_eq!(p.permissions[4].inherit_aud, Some(true));
    assert_eq!(p.title_lang["fr"], "Example for Modération");
    let Some(Def::Record(r)) = corpus.docs["example.lexicon.record"].defs.get("main") else {
        panic!()
    };
    assert_eq!(r.key, RecordKey::Literal("demo".into()));
}

#[test]
fn invalid_vectors_fail_for_the_expected_reason() {
    let expected = [
        ("invalid lexicon field", "lexicon: must be 1"),
        ("invalid id field", "id: must be a string"),
        ("invalid NSID", "id: invalid NSID"),
        (
            "defined unknown",
            "type \"unknown\" is not allowed as a top-level definition",
        ),
        (
            "defined ref",
            "type \"ref\" is not allowed as a top-level definition",
        ),
        (
            "non-main primary",
            "defs.demo: record definitions must be named main",
        ),
        (
            "record missing type object",
            "defs.main.record: record schema must be of type \"object\"",
        ),
    ];
    for (name, doc) in vectors("lexicon-invalid.json") {
        let err = parse_corpus(&[("v".to_string(), doc)])
            .unwrap_err()
            .to_string();
        let want = expected
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .unwrap();
        assert!(err.contains(want), "{name}: got {err:?}, want {want:?}");
    }
}
