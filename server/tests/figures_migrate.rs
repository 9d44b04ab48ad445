//! Prints `pds migrate`'s figures on loopback: an account of 10,000 records and 200 MiB of blobs
//! (200 images of 1 MiB) moved from the reference PDS (`@atproto/pds`) to the native server,
//! with a loopback PLC directory; then the cost of running it again once everything is done
//! (what a resume pays before it finds work). A benchmark, not a test: it asserts only that the
//! migration succeeded, and runs on demand:
//!
//! `cargo test --release -p pds --test figures_migrate -- --ignored --nocapture`

#[macro_use]
mod support;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use support::http::{post_json, request, xrpc};
use support::plc::PlcDirectory;
use support::ref_pds::RefPds;
use support::ShellKind;

const RECORDS: usize = 10_000;
const IMAGES: usize = 200;
const IMAGE_BYTES: usize = 1024 * 1024;
const OLD_PASSWORD: &str = "password-on-the-reference";
const NEW_PASSWORD: &str = "password-on-this-pds";

fn ok(reply: support::http::Reply, what: &str) -> Value {
    assert_eq!(
        reply.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// The `pds migrate` run: its wall time and its standard error lines.
fn migrate(base: &str, old: &str, plc: &str, did: &str, reference: &RefPds) -> (f64, Vec<String>) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pds"))
        .args(["migrate", "--from", did, "--url", base, "--old-pds", old])
        .args(["--plc-url", plc, "--deactivate-old"])
        .env("PDS_OLD_PASSWORD", OLD_PASSWORD)
        .env("PDS_PASSWORD", NEW_PASSWORD)
        .env_remove("PDS_PLC_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut stdin = child.stdin.take();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines().map_while(Result::ok) {
        if line.contains("preferences copied") {
            // The old PDS mails the token it is asked for next; read it from its database.
            let token = (0..200)
                .find_map(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    reference.try_plc_token(did)
                })
                .expect("a PLC token");
            if let Some(mut stdin) = stdin.take() {
                writeln!(stdin, "{token}").unwrap();
            }
        }
        lines.push(line);
    }
    assert!(child.wait().unwrap().success(), "{}", lines.join("\n"));
    (started.elapsed().as_secs_f64(), lines)
}

/// The number after `label` in the line that contains `marker`.
fn figure(lines: &[String], marker: &str, label: &str) -> f64 {
    let line = lines.iter().find(|l| l.contains(marker)).unwrap();
    let before = line.split(label).next().unwrap();
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

#[test]
#[ignore = "a benchmark: run it on demand (see the module doc)"]
fn migrate_figures() {
    let plc = PlcDirectory::start();
    let reference = RefPds::start(&plc.url);
    let old = reference.base.clone();
    let born = ok(
        post_json(
            &old,
            "/xrpc/com.atproto.server.createAccount",
            &json!({ "handle": support::account::HANDLE, "email": "a@example.com", "password": OLD_PASSWORD }),
        ),
        "createAccount",
    );
    let did = born["did"].as_str().unwrap().to_owned();
    let token = born["accessJwt"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    let setup = Instant::now();
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend((0..IMAGE_BYTES - 8).map(|j| (j.wrapping_mul(31) ^ i) as u8));
        let blob = ok(
            request(
                &old,
                "POST",
                "/xrpc/com.atproto.repo.uploadBlob",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "image/png"),
                ],
                &bytes,
            ),
            "uploadBlob",
        )["blob"]
            .clone();
        images.push(blob);
    }
    let writes: Vec<Value> = (0..RECORDS)
        .map(|i| {
            let mut post = json!({ "$type": "app.bsky.feed.post", "text": format!("post {i}"), "createdAt": "2026-12-06T10:00:00.000Z" });
            if let Some(image) = images.get(i) {
                post["embed"] = json!({ "$type": "app.bsky.embed.images", "images": [{ "alt": "", "image": image }] });
            }
            json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post })
        })
        .collect();
    for batch in writes.chunks(200) {
        ok(
            xrpc(
                &old,
                "POST",
                "com.atproto.repo.applyWrites",
                &token,
                Some(&json!({ "repo": did, "writes": batch })),
            ),
            "applyWrites",
        );
    }
    eprintln!(
        "set up {RECORDS} records and {IMAGES} blobs on the reference in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let server = support::start_shell(
        ShellKind::Native,
        &[
            (pds::config::vars::DID, did.as_str()),
            (pds::config::vars::PLC_URL, plc.url.as_str()),
        ],
    );
    let base = server.base().to_owned();
    let (total, lines) = migrate(&base, &old, &plc.url, &did, &reference);
    let repo_secs = figure(&lines, "repository imported", " s");
    let repo_mib = figure(&lines, "repository imported", " MiB");
    let blob_secs = figure(&lines, "blobs: 200 transferred", " s,");
    let blob_mib = figure(&lines, "blobs: 200 transferred", " MiB");
    let (again, again_lines) = migrate(&base, &old, &plc.url, &did, &reference);
    assert!(again_lines
        .iter()
        .any(|l| l.contains("already active here")));
    println!("pds migrate, reference PDS -> native PDS on loopback ({RECORDS} records, {IMAGES} blobs of 1 MiB, 6 at a time):");
    println!(
        "  repository: {repo_mib:.1} MiB in {repo_secs:.1} s: {:.0} records/s, {:.1} MiB/s",
        RECORDS as f64 / repo_secs,
        repo_mib / repo_secs
    );
    println!(
        "  blobs: {blob_mib:.1} MiB in {blob_secs:.1} s: {:.1} blobs/s, {:.1} MiB/s",
        IMAGES as f64 / blob_secs,
        blob_mib / blob_secs
    );
    println!("  whole run (sign-ins, account, repository, blobs, preferences, identity, activation): {total:.1} s");
    println!("  a run again once all is done (the checks a resume makes first): {again:.2} s");
}
