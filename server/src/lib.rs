//! A single-user AT Protocol Personal Data Server for Cloudflare Workers.

pub mod account;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data;
pub mod dev_account;
pub mod firehose;
pub mod hex;
pub mod http;
pub mod identity_events;
pub mod lifecycle;
pub mod log;
pub mod maintenance;
pub mod net;
pub mod offload;
pub mod password;
pub mod platform;
pub mod proxy;
pub mod repo;
pub mod routes;
pub mod storage;
pub mod syntax;
pub mod tid;
pub mod writes;
