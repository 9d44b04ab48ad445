//! The atproto data model as an untyped value: what a record is, exactly as sent.

use std::collections::BTreeMap;

pub use cid::Cid;

/// A map in the data model. Keys are strings; the DAG-CBOR encoder orders them canonically.
pub type Map = BTreeMap<String, Value>;

/// One value of the atproto data model. There are no floats: the data model forbids them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    String(String),
    Bytes(Vec<u8>),
    Link(Cid),
    Array(Vec<Value>),
    Map(Map),
}
