//! Runs the native shell in-process on a free loopback port.

use pds::config::Config;

/// A native PDS serving on a background thread for the rest of the test process.
pub struct NativeServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl NativeServer {
    /// Starts a server with the test account, `overrides` applied to its variables.
    pub fn start(overrides: &[(&str, &str)]) -> NativeServer {
        let vars = super::account::vars_with(overrides);
        let config = Config::from_lookup(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        });
        let addr = pds::platform::native::spawn("127.0.0.1:0".parse().unwrap(), config)
            .expect("start native server");
        NativeServer {
            base: format!("http://{addr}"),
        }
    }
}
