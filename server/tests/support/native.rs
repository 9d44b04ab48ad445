//! Runs the native shell in-process on a free loopback port.

use pds::config::Config;

/// A native PDS serving on a background thread for the rest of the test process.
pub struct NativeServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The account's SQLite file and blobs, removed when the test ends.
    pub data: super::worker::TempDir,
}

impl NativeServer {
    /// Starts a server with the test account, `overrides` applied to its variables.
    pub fn start(overrides: &[(&str, &str)]) -> NativeServer {
        let vars = super::account::vars_with(overrides);
        let config = Config::from_lookup(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        });
        let data = super::worker::TempDir::new("pds-native-data");
        let addr =
            pds::platform::native::spawn("127.0.0.1:0".parse().unwrap(), config, data.0.clone())
                .expect("start native server");
        NativeServer {
            base: format!("http://{addr}"),
            data,
        }
    }
}
