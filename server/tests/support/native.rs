//! Runs the native shell in-process on a free loopback port.

use pds::config::Config;
use pds::platform::native::SpawnedServer;

/// A native PDS serving on a background thread for the rest of the test process.
pub struct NativeServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The account's SQLite file and blobs, removed when the test ends.
    pub data: super::worker::TempDir,
    vars: Vec<(String, String)>,
    server: Option<SpawnedServer>,
}

impl NativeServer {
    /// Starts a server with the test account, `overrides` applied to its variables.
    pub fn start(overrides: &[(&str, &str)]) -> NativeServer {
        let vars = super::account::vars_with(overrides);
        let data = super::worker::TempDir::new("pds-native-data");
        let server = serve(&vars, &data);
        NativeServer {
            base: format!("http://{}", server.addr),
            data,
            vars,
            server: Some(server),
        }
    }

    /// Sets a configuration variable for the next [`Self::restart`] (like a redeploy with a
    /// changed variable).
    pub fn set_var(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Stops the server (its connections closed, its SQLite file closed) and starts a new one on
    /// the same data folder, on a new port: `base` changes.
    pub fn restart(&mut self) {
        if let Some(old) = self.server.take() {
            old.stop();
        }
        let server = serve(&self.vars, &self.data);
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }
}

fn serve(vars: &[(String, String)], data: &super::worker::TempDir) -> SpawnedServer {
    let config =
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    pds::platform::native::spawn_stoppable("127.0.0.1:0".parse().unwrap(), config, data.0.clone())
        .expect("start native server")
}
