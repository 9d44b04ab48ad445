//! Platform shells: thin adapters from a runtime (Cloudflare Workers, or native) to the shared core.

#[cfg(target_arch = "wasm32")]
pub mod worker;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;
