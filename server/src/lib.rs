//! A single-user AT Protocol Personal Data Server for Cloudflare Workers.

pub mod config;
pub mod crypto;
pub mod data;
pub mod http;
pub mod platform;
pub mod repo;
pub mod routes;
pub mod storage;
