//! What the figure programs share: posts to fill repositories with, and record keys.

/// A post record with `text`, as DAG-CBOR.
pub fn post(text: String) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Post {
        #[serde(rename = "$type")]
        t: &'static str,
        text: String,
        #[serde(rename = "createdAt")]
        created_at: &'static str,
    }
    serde_ipld_dagcbor::to_vec(&Post {
        t: "app.bsky.feed.post",
        text,
        created_at: "2026-11-24T06:00:00.000Z",
    })
    .unwrap_or_default()
}

/// The TID (13 base32-sortable characters) of `value`.
#[allow(dead_code)]
pub fn tid(value: u64) -> String {
    const S32: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    (0..13)
        .rev()
        .map(|i| S32[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}
