//! A real PLC directory on loopback: `@did-plc/server` with an in-memory database
//! (oracle/plc-directory.mjs), and `@did-plc/lib` to sign and verify operations independently.

use std::process::{Child, ChildStdin, Stdio};

use serde_json::{json, Value};

/// A running PLC directory; stopped when dropped.
pub struct PlcDirectory {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
}

impl PlcDirectory {
    /// Starts a directory and waits until it listens.
    pub fn start() -> PlcDirectory {
        let (child, stdin, info) =
            super::oracle::spawn_service("plc-directory.mjs", &[], Stdio::null());
        PlcDirectory {
            stdin: Some(stdin),
            child,
            url: format!("http://127.0.0.1:{}", info["port"]),
        }
    }

    /// GETs `path` of the directory: status and JSON body (Null when not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let res = super::http::get(&self.url, path);
        (
            res.status,
            serde_json::from_slice(&res.body).unwrap_or(Value::Null),
        )
    }

    /// POSTs an operation for `did`: status and the answer as text.
    pub fn submit(&self, did: &str, op: &Value) -> (u16, String) {
        let res = super::http::post_json(&self.url, &format!("/{did}"), op);
        (res.status, String::from_utf8_lossy(&res.body).into_owned())
    }

    /// Creates a DID with a genesis operation setting `data`, signed by `key` (one of its
    /// rotation keys) with `@did-plc/lib`; returns the DID.
    pub fn create(&self, data: &Value, key: &pds::crypto::SigningKey) -> String {
        let mut op = data.clone();
        op["type"] = "plc_operation".into();
        op["prev"] = Value::Null;
        let signed = sign_with_library(&op, key);
        let did = signed["did"].as_str().unwrap().to_owned();
        let (status, body) = self.submit(&did, &signed["signed"]);
        assert_eq!(status, 200, "genesis refused: {body}");
        did
    }

    /// Verifies `did`'s whole audit log with `@did-plc/lib` (genesis hash, `prev` chain,
    /// signatures); returns `{ok, ops, data, doc}`.
    pub fn verify(&self, did: &str) -> Value {
        super::oracle::run_node("plc-verify.mjs", &json!({ "plcUrl": self.url, "did": did }))
    }
}

impl Drop for PlcDirectory {
    fn drop(&mut self) {
        // Closing stdin stops it; wait so no process outlives the test.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `op` (without `sig`) signed by `key` with `@did-plc/lib`: `{signed, cid, didKey, did?}`.
pub fn sign_with_library(op: &Value, key: &pds::crypto::SigningKey) -> Value {
    super::oracle::run_node("plc-sign.mjs", &json!({ "op": op, "keyHex": key.to_hex() }))
}

/// The test account's PLC rotation key.
pub fn rotation_key() -> pds::crypto::SigningKey {
    let hex = &super::account::vars()
        .iter()
        .find(|(k, _)| k == pds::config::vars::PLC_ROTATION_KEY)
        .unwrap()
        .1;
    pds::crypto::SigningKey::from_hex(pds::crypto::KeyAlgorithm::K256, hex).unwrap()
}
