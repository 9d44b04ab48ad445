//! `pds`: the native server (self-hosting off Cloudflare, and tests).
//!
//! `pds serve [ADDR]` serves on ADDR (default 127.0.0.1:2583) with configuration from the
//! environment (the same variables as the Worker's, see README).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let addr = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:2583");
            let addr: std::net::SocketAddr = match addr.parse() {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("pds serve: bad address {addr:?}: {e}");
                    return ExitCode::from(2);
                }
            };
            let config = pds::config::Config::from_lookup(|name| std::env::var(name).ok());
            if let Err(e) = &config {
                eprintln!("pds serve: {e}");
                return ExitCode::from(2);
            }
            match pds::platform::native::spawn(addr, config) {
                Ok(bound) => {
                    println!("Serving on http://{bound}");
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    eprintln!("pds serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: pds serve [ADDR]");
            ExitCode::from(2)
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
