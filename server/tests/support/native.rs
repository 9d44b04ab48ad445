//! Runs the native shell in-process on a free loopback port.

use pds::config::Config;

/// A native PDS serving on a background thread for the rest of the test process.
pub struct NativeServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl NativeServer {
    /// Starts a server whose configuration is `vars` (name, value), like the Worker's vars.
    pub fn start(vars: &[(&str, &str)]) -> NativeServer {
        let owned: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_lookup(|name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| default_var(name))
        });
        let addr = pds::platform::native::spawn("127.0.0.1:0".parse().unwrap(), config)
            .expect("start native server");
        NativeServer {
            base: format!("http://{addr}"),
        }
    }
}

/// The variables wrangler.toml gives the Worker, so both shells start alike.
fn default_var(name: &str) -> Option<String> {
    match name {
        "PDS_HOSTNAME" => Some("localhost".into()),
        _ => None,
    }
}
