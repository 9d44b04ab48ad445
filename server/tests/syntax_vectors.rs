//! Every file in the official syntax vectors, run through the validated string types
//! and through `validate_format`: valid lines must pass, invalid lines must fail.

mod support;

use pds::syntax::*;

/// Which checker a vector file's prefix exercises, with its lexicon format name.
fn checker(prefix: &str) -> (&'static str, fn(&str) -> bool) {
    match prefix {
        "atidentifier" => ("at-identifier", |s| AtIdentifier::new(s).is_ok()),
        "aturi" => ("at-uri", |s| AtUri::new(s).is_ok()),
        "cid" => ("cid", |s| CidString::new(s).is_ok()),
        "datetime" => ("datetime", |s| Datetime::new(s).is_ok()),
        "did" => ("did", |s| Did::new(s).is_ok()),
        "handle" => ("handle", |s| Handle::new(s).is_ok()),
        "language" => ("language", |s| Language::new(s).is_ok()),
        "nsid" => ("nsid", |s| Nsid::new(s).is_ok()),
        "recordkey" => ("record-key", |s| RecordKey::new(s).is_ok()),
        "tid" => ("tid", |s| Tid::new(s).is_ok()),
        "uri" => ("uri", |s| Uri::new(s).is_ok()),
        other => panic!("no checker for syntax vector group {other:?}"),
    }
}

#[test]
fn every_syntax_vector_file() {
    let dir = support::interop_dir().join("syntax");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        24,
        "expected the 24 syntax vector files, found {names:?}"
    );

    let mut total = 0;
    let mut failures = Vec::new();
    for name in &names {
        // e.g. "handle_syntax_valid.txt", "datetime_parse_invalid.txt"
        let stem = name.trim_end_matches(".txt");
        let (prefix, rest) = stem.split_once('_').unwrap();
        let should_pass = rest.ends_with("_valid");
        assert!(should_pass || rest.ends_with("_invalid"), "{name}");
        let (format, check) = checker(prefix);
        let vectors = support::syntax_vectors(name);
        assert!(!vectors.is_empty(), "{name} has no vectors");
        for v in &vectors {
            let typed = check(v);
            let by_format = validate_format(format, v).is_ok();
            if typed != should_pass || by_format != should_pass {
                failures.push(format!("{name}: {v:?} (typed {typed}, format {by_format})"));
            }
        }
        println!("{name}: {} vectors", vectors.len());
        total += vectors.len();
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("total: {total} syntax vectors");
}

#[test]
fn unknown_format_is_an_error() {
    assert!(validate_format("not-a-format", "x").is_err());
    assert!(validate_format("did", "did:plc:abc").is_ok());
}

#[test]
fn serde_validates() {
    let did: Did = serde_json::from_str("\"did:plc:abc\"").unwrap();
    assert_eq!(serde_json::to_string(&did).unwrap(), "\"did:plc:abc\"");
    assert!(serde_json::from_str::<Did>("\"did:PLC:abc\"").is_err());
    assert!(serde_json::from_str::<Datetime>("\"1985-13-12T23:20:50.123Z\"").is_err());
    let h = Handle::new("Alice.Example.COM").unwrap();
    assert_eq!(h.as_str(), "Alice.Example.COM");
    assert_eq!(h.to_lowercase().as_str(), "alice.example.com");
    let e = Nsid::new("com.example").unwrap_err();
    assert_eq!(e.format, "nsid");
    assert!(e.to_string().contains("three segments"), "{e}");
}
