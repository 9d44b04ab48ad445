//! Talking to the rest of the network: the outbound HTTP port and what is built on it.

pub mod did_doc;
pub mod http_client;
pub mod identity;
pub mod plc_directory;
