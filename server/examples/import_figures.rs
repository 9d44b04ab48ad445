//! Prints importRepo figures on the native shell: throughput (records/s, MiB/s) and the server
//! process's memory (its peak resident set, before and after the import) for repositories of
//! the given sizes.
//!
//! `cargo run --release -p pds --example import_figures [records...]` (default 10000 100000);
//! `... --example import_figures write N FILE` writes the CAR of N records to FILE instead (to
//! import it elsewhere, e.g. into the Worker under workerd).
//! The server runs in a child process (this program again), so its memory is its own; the CAR
//! is built here and sent over loopback. Times are wall clock on this machine; nothing asserts
//! on them.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::repo::car::CarWriter;
use pds::repo::{MemoryBlockStore, Repo, WriteOp};

const PASSWORD: &str = "import-figures-password";
const DID: &str = "did:plc:importfigures0000000000";

fn record(n: u64) -> Vec<u8> {
    support::post(format!(
        "post number {n}, with some text to make it look like a real post"
    ))
}

/// A repository of `n` posts for [`DID`], signed by a key of another host, as a CAR.
fn car_of(n: u64) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let key = SigningKey::from_bytes(KeyAlgorithm::K256, &[7u8; 32])?;
    let writes: Vec<WriteOp> = (0..n)
        .map(|i| WriteOp::Create {
            collection: "app.bsky.feed.post".into(),
            rkey: support::tid((1 << 52) + i),
            record: record(i),
        })
        .collect();
    let store = MemoryBlockStore::new();
    let (_, output) = Repo::create(&store, DID, &writes, &key, &support::tid((1 << 52) + n + 1))?;
    let mut car = CarWriter::new(Vec::new(), &output.cid)?;
    for (cid, bytes) in &output.new_blocks {
        car.write_block(cid, bytes)?;
    }
    Ok(car.finish()?)
}

/// One HTTP/1.1 exchange on loopback: status and body.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    if chunked {
        // Small answers only: take the first chunk's bytes.
        let text = String::from_utf8_lossy(&rest).into_owned();
        let body = text
            .split("\r\n")
            .nth(1)
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
        return Ok((code, body));
    }
    Ok((code, rest))
}

/// `VmHWM` and `VmRSS` of process `pid`, in MiB.
fn memory_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The child: serves the account on `port` until its standard input closes.
fn serve(port: u16, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = pds::config::Config::from_lookup(|name| std::env::var(name).ok())?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _server = pds::platform::native::spawn_stoppable(addr, Ok(config), dir.into())?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(args[2].parse()?, &args[3]);
    }
    if args.get(1).map(String::as_str) == Some("write") {
        let n: u64 = args.get(2).ok_or("write N FILE")?.parse()?;
        let file = args.get(3).ok_or("write N FILE")?;
        std::fs::write(file, car_of(n)?)?;
        println!("{file}: the repository of {DID}, {n} records");
        return Ok(());
    }
    let sizes: Vec<u64> = if args.len() > 1 {
        args[1..].iter().filter_map(|a| a.parse().ok()).collect()
    } else {
        vec![10_000, 100_000]
    };
    println!(
        "records   CAR MiB   import s   records/s   MiB/s   server peak MiB (before -> after)"
    );
    for n in sizes {
        let car = car_of(n)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("pds-import-figures-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let account =
            pds::dev_account::DevAccount::generate(port, Some("alice.test"), Some(PASSWORD))?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", &port.to_string(), &dir.to_string_lossy()])
            .envs(account.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env(pds::config::vars::DID, DID)
            .env(pds::config::vars::PLC_URL, "http://127.0.0.1:9")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut ready = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut ready)?;
        let login = serde_json::json!({ "identifier": DID, "password": PASSWORD }).to_string();
        let (status, body) = exchange(
            port,
            "POST",
            "/xrpc/com.atproto.server.createSession",
            &[("content-type", "application/json")],
            login.as_bytes(),
        )?;
        let session: serde_json::Value = serde_json::from_slice(&body)?;
        let token = session["accessJwt"]
            .as_str()
            .ok_or(format!("login: {status}"))?;
        let auth = format!("Bearer {token}");
        let (before, _) = memory_of(child.id());
        let started = Instant::now();
        let (status, body) = exchange(
            port,
            "POST",
            "/xrpc/com.atproto.repo.importRepo",
            &[
                ("authorization", &auth),
                ("content-type", "application/vnd.ipld.car"),
            ],
            &car,
        )?;
        let secs = started.elapsed().as_secs_f64();
        let (peak, _) = memory_of(child.id());
        if status != 200 {
            eprintln!(
                "import of {n} records: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mib = car.len() as f64 / (1024.0 * 1024.0);
        println!(
            "{n:>7}   {mib:>7.1}   {secs:>8.2}   {:>9.0}   {:>5.1}   {before:.0} -> {peak:.0}",
            n as f64 / secs,
            mib / secs
        );
        drop(child.stdin.take());
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
