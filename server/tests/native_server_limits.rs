//! The native server under connection abuse: a slowloris client (many connections, headers
//! dripped in) neither starves other clients nor holds its connections past the header timeout,
//! and running out of file descriptors does not end the server.

mod support;

use std::io::{BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pds::platform::native::{HEADER_TIMEOUT, MAX_CONNECTIONS_PER_ADDRESS};
use support::http::{connect_from, get, read_head};

/// Whether the server closed `stream` (a read sees the end, or the connection reset).
fn closed(mut stream: &TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_slowloris_client_starves_no_one() {
    let server = support::native::NativeServer::start(&[]);
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    // Twice as many connections as one address may hold, each with half a request line.
    let mut held = Vec::new();
    for _ in 0..2 * MAX_CONNECTIONS_PER_ADDRESS {
        let (mut stream, _) = connect_from(Some(attacker), &server.base);
        stream
            .write_all(b"GET /xrpc/_health HTTP/1.1\r\nho")
            .unwrap();
        held.push(stream);
    }
    let started = Instant::now();
    // Those over the per-address cap are closed at once.
    let refused = held
        .iter()
        .filter(|s| closed(s, Duration::from_millis(20)))
        .count();
    assert!(
        refused >= MAX_CONNECTIONS_PER_ADDRESS,
        "{refused} of {} closed",
        held.len()
    );
    // Another client is served at once, while the attack goes on.
    let asked = Instant::now();
    let res = get(&server.base, "/xrpc/_health");
    assert_eq!(res.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(2));
    // Dripping bytes does not keep a connection: the headers must be complete in time.
    let deadline = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(5);
    for stream in held.iter_mut() {
        let _ = stream.write_all(b"s");
    }
    let mut open = held.len();
    while open > 0 && Instant::now() < deadline {
        open = held
            .iter()
            .filter(|s| !closed(s, Duration::from_millis(50)))
            .count();
    }
    assert_eq!(open, 0, "connections still open after the header timeout");
    assert!(started.elapsed() >= HEADER_TIMEOUT - Duration::from_secs(1));
    // And the attacker's address may connect again.
    let (mut stream, authority) = connect_from(Some(attacker), &server.base);
    write!(
        stream,
        "GET /xrpc/_health HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_head(&mut BufReader::new(stream)).0, 200);
}

#[test]
fn running_out_of_file_descriptors_does_not_end_the_server() {
    let dir = support::worker::TempDir::new("pds-fd");
    // `pds serve` as its own process, allowed 40 open files.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 40 && exec {} serve 127.0.0.1:0",
            env!("CARGO_BIN_EXE_pds")
        ))
        .envs(support::account::vars().iter().cloned())
        .env("PDS_DATA_DIR", &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut BufReader::new(stdout), &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("Serving on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    assert_eq!(get(&base, "/xrpc/_health").status, 200);

    // More connections than the process may hold files: accepts fail for a while.
    let mut held = Vec::new();
    for _ in 0..60 {
        let (stream, _) = connect_from(None, &base);
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    // Once they are gone the server serves again: the failures did not end it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = std::panic::catch_unwind(|| get(&base, "/xrpc/_health").status).ok();
        if status == Some(200) || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, Some(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server process exited"
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("accept failed"), "stderr: {err}");
}
