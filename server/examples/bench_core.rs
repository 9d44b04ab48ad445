//! Prints timings of the protocol-core hot paths: DAG-CBOR encode/decode, CIDs, the
//! streaming blob hasher, signing and verifying. Run with
//! `cargo run --release -p pds --example bench_core`.

use std::hint::black_box;
use std::time::Instant;

use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::data::{cid_for_cbor, decode, encode_into, RawCidHasher, Value};

fn time<R>(label: &str, iters: u32, bytes_per_iter: usize, mut f: impl FnMut() -> R) {
    // Warm up, then measure.
    for _ in 0..iters / 10 + 1 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    let elapsed = start.elapsed();
    let per = elapsed.as_nanos() as f64 / iters as f64;
    if bytes_per_iter > 0 {
        let mbps = bytes_per_iter as f64 * iters as f64 / elapsed.as_secs_f64() / 1e6;
        println!("{label:<40} {per:>10.0} ns/op  {mbps:>8.1} MB/s");
    } else {
        println!("{label:<40} {per:>10.0} ns/op");
    }
}

fn post_record() -> Value {
    let json = serde_json::json!({
        "$type": "app.bsky.feed.post",
        "text": "Hello from a benchmark: a short post with a link https://example.com and a mention",
        "createdAt": "2024-11-24T06:00:00.000Z",
        "langs": ["en"],
        "facets": [{
            "index": {"byteStart": 50, "byteEnd": 69},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com"}]
        }],
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [{
                "alt": "a picture",
                "image": {
                    "$type": "blob",
                    "ref": {"$link": "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"},
                    "mimeType": "image/jpeg",
                    "size": 10000
                },
                "aspectRatio": {"width": 1000, "height": 750}
            }]
        }
    });
    Value::from_json(&json).expect("valid record")
}

fn mst_node() -> Value {
    // An MST node with 16 entries: the shape the repository code encodes most often.
    let leaf = cid_for_cbor(b"record");
    let entries = (0..16)
        .map(|i| {
            let mut e = pds::data::Map::new();
            e.insert("p".into(), Value::Integer(if i == 0 { 0 } else { 19 }));
            e.insert(
                "k".into(),
                Value::Bytes(format!("app.bsky.feed.post/3k{i:011}").into_bytes()),
            );
            e.insert("v".into(), Value::Link(leaf));
            e.insert("t".into(), Value::Null);
            Value::Map(e)
        })
        .collect();
    let mut node = pds::data::Map::new();
    node.insert("l".into(), Value::Null);
    node.insert("e".into(), Value::Array(entries));
    Value::Map(node)
}

fn main() {
    let mut buf = Vec::with_capacity(4096);
    for (name, value) in [
        ("post record", post_record()),
        ("MST node (16 entries)", mst_node()),
    ] {
        buf.clear();
        encode_into(&value, &mut buf);
        let bytes = buf.clone();
        println!("{name}: {} bytes of DAG-CBOR", bytes.len());
        time(&format!("encode_into {name}"), 200_000, bytes.len(), || {
            buf.clear();
            encode_into(&value, &mut buf);
            buf.len()
        });
        time(&format!("decode {name}"), 200_000, bytes.len(), || {
            decode(&bytes).map(|_| ())
        });
        time(&format!("validate {name}"), 200_000, bytes.len(), || {
            pds::data::validate(&bytes)
        });
        time(
            &format!("cid_for_cbor {name}"),
            200_000,
            bytes.len(),
            || cid_for_cbor(&bytes),
        );
        time(
            &format!("serde_ipld_dagcbor::to_vec {name}"),
            200_000,
            bytes.len(),
            || serde_ipld_dagcbor::to_vec(&value).map(|v| v.len()),
        );
    }

    let blob: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    time(
        "RawCidHasher 8 MiB in 64 KiB chunks",
        20,
        blob.len(),
        || {
            let mut h = RawCidHasher::new();
            for chunk in blob.chunks(64 << 10) {
                h.update(chunk);
            }
            h.finish()
        },
    );

    let msg = post_record();
    let mut commit = Vec::new();
    encode_into(&msg, &mut commit);
    for alg in [KeyAlgorithm::K256, KeyAlgorithm::P256] {
        let key = SigningKey::generate(alg);
        let public = key.public_key();
        let sig = key.sign(&commit);
        time(&format!("sign {alg:?}"), 2_000, 0, || key.sign(&commit));
        time(&format!("verify {alg:?}"), 2_000, 0, || {
            public.verify(&commit, &sig)
        });
    }
}
