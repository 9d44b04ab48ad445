//! Deployment configuration: read once per request from the platform's variables
//! (wrangler vars and secrets on Workers, the environment natively).

use std::fmt;

/// What one deployment is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The public hostname this PDS answers on (no scheme, no path).
    pub hostname: String,
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration variable {}: {}",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the configuration through `lookup(name) -> value`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let hostname = require(&lookup, "PDS_HOSTNAME")?;
        let valid = !hostname.is_empty()
            && hostname.len() <= 253
            && hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid {
            return Err(ConfigError {
                variable: "PDS_HOSTNAME",
                problem: format!("{hostname:?} is not a hostname (like pds.example.com)"),
            });
        }
        Ok(Config { hostname })
    }

    /// The server's own DID: `did:web` of its hostname (a port is percent-encoded).
    pub fn service_did(&self) -> String {
        format!("did:web:{}", self.hostname.replace(':', "%3A"))
    }
}

fn require(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<String, ConfigError> {
    match lookup(variable) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ConfigError {
            variable,
            problem: "is not set".into(),
        }),
    }
}
