//! The reference PDS (`@atproto/pds`, oracle/ref-pds.mjs) on loopback: the other end of an
//! account migration, sharing the tests' PLC directory.

use std::process::{Child, ChildStdin, Stdio};

use serde_json::json;

/// A running reference PDS; stopped when dropped.
pub struct RefPds {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its base URL on 127.0.0.1 (it listens there only).
    pub base: String,
    /// Its service DID (`did:web:localhost%3A<port>`).
    pub did: String,
    /// Its admin password (Basic `admin:<password>`).
    pub admin_password: String,
    data_dir: String,
}

impl RefPds {
    /// Starts one whose PLC operations go to `plc_url`, and waits until it listens.
    pub fn start(plc_url: &str) -> RefPds {
        let (child, stdin, info) = super::oracle::spawn_service(
            "ref-pds.mjs",
            &[json!({ "plcUrl": plc_url }).to_string()],
            Stdio::inherit(),
        );
        RefPds {
            stdin: Some(stdin),
            child,
            base: format!("http://127.0.0.1:{}", info["port"]),
            did: info["did"].as_str().unwrap().to_owned(),
            admin_password: info["adminPassword"].as_str().unwrap().to_owned(),
            data_dir: info["dataDir"].as_str().unwrap().to_owned(),
        }
    }

    /// The PLC operation token it stored for `did` (it would mail it).
    pub fn plc_token(&self, did: &str) -> String {
        self.try_plc_token(did).expect("a PLC token")
    }

    /// The PLC operation token stored for `did`, if one was requested.
    pub fn try_plc_token(&self, did: &str) -> Option<String> {
        let out = super::oracle::run_node(
            "ref-token.mjs",
            &json!({ "dataDir": self.data_dir, "did": did }),
        );
        out["token"].as_str().map(str::to_owned)
    }
}

impl Drop for RefPds {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
