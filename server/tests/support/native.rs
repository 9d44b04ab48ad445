//! Runs the native shell in-process on a free loopback port.

use pds::config::Config;

/// A native PDS serving on a background thread for the rest of the test process.
pub struct NativeServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The account's SQLite file and blobs, removed when the test ends.
    pub data: super::worker::TempDir,
    vars: Vec<(String, String)>,
}

impl NativeServer {
    /// Starts a server with the test account, `overrides` applied to its variables.
    pub fn start(overrides: &[(&str, &str)]) -> NativeServer {
        let vars = super::account::vars_with(overrides);
        let data = super::worker::TempDir::new("pds-native-data");
        let base = serve(&vars, &data);
        NativeServer { base, data, vars }
    }

    /// A new server on the same data folder (a fresh account opening, SQLite read back from
    /// disk, nothing carried over in memory), on a new port: `base` changes. The native shell
    /// has no stop, so the previous server keeps its port but the test no longer talks to it.
    pub fn restart(&mut self) {
        self.base = serve(&self.vars, &self.data);
    }
}

fn serve(vars: &[(String, String)], data: &super::worker::TempDir) -> String {
    let config =
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    let addr = pds::platform::native::spawn("127.0.0.1:0".parse().unwrap(), config, data.0.clone())
        .expect("start native server");
    format!("http://{addr}")
}
