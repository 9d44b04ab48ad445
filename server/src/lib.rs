//! A single-user AT Protocol Personal Data Server for Cloudflare Workers.

pub mod clock;
pub mod crypto;
pub mod data;
pub mod repo;
pub mod syntax;
pub mod tid;
