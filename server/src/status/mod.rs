//! The deployment's status: the checks background maintenance runs ([`checks`]) and the page
//! and method that show them with the account's public figures ([`page`]).

pub mod checks;
pub mod page;
