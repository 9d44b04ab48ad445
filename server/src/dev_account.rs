//! The local development account `npm start` creates on a fresh clone: did:web of the local
//! host, a handle, a fresh signing key, token secret, and a password (random unless preset).

use crate::config::vars;
use crate::crypto::{KeyAlgorithm, SigningKey};

/// A generated account: its variables (as `.dev.vars` holds them) and its clear password.
pub struct DevAccount {
    pub vars: Vec<(&'static str, String)>,
    pub password: String,
}

/// The handle used when none is preset. `.test` is reserved for testing, so it never
/// collides with a real handle.
pub const DEFAULT_HANDLE: &str = "alice.test";

impl DevAccount {
    /// The configuration these variables make.
    pub fn config(&self) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::Config::from_lookup(|name| {
            self.vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
    }

    /// Generates an account for a PDS on `localhost:<port>`.
    pub fn generate(
        port: u16,
        handle: Option<&str>,
        password: Option<&str>,
    ) -> Result<DevAccount, String> {
        let hostname = format!("localhost:{port}");
        let handle = handle.unwrap_or(DEFAULT_HANDLE).to_ascii_lowercase();
        pds_api::runtime::syntax::Handle::new(handle.clone())
            .map_err(|e| format!("handle {handle:?}: {e}"))?;
        let password = match password {
            Some(p) if p.len() >= 8 => p.to_owned(),
            Some(_) => return Err("the password must have at least 8 characters".into()),
            None => random_password()?,
        };
        let signing_key = SigningKey::generate(KeyAlgorithm::K256);
        let vars = vec![
            (vars::HOSTNAME, hostname.clone()),
            (
                vars::DID,
                format!("did:web:{}", hostname.replace(':', "%3A")),
            ),
            (vars::HANDLE, handle),
            (vars::SIGNING_KEY, signing_key.to_hex()),
            (
                vars::PLC_ROTATION_KEY,
                SigningKey::generate(KeyAlgorithm::K256).to_hex(),
            ),
            (vars::PASSWORD_HASH, crate::password::hash(&password)?),
            (vars::JWT_SECRET, crate::hex::encode(&random_bytes::<32>()?)),
        ];
        Ok(DevAccount { vars, password })
    }

    /// The variables in dotenv form, for `.dev.vars`.
    pub fn to_dotenv(&self) -> String {
        dotenv(
            "The local development account, made by `pds dev-init`. Secret: never commit.",
            &self.vars,
        )
    }
}

/// `vars` as a dotenv file (`.dev.vars`) under the comment `header`.
pub fn dotenv(header: &str, vars: &[(&'static str, String)]) -> String {
    let mut out = format!("# {header}\n");
    for (name, value) in vars {
        // wrangler expands `$` in vars files even inside quotes; PHC strings contain it.
        out.push_str(&format!("{name}='{}'\n", value.replace('$', "\\$")));
    }
    out
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom02::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes)
}

/// Four groups of four lower-case letters and digits, like an app password.
pub fn random_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes = random_bytes::<16>()?;
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    Ok(chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_account_is_a_valid_configuration() {
        let account = DevAccount::generate(2583, Some("Bob.Test"), None).unwrap();
        let config = account.config().unwrap();
        assert_eq!(config.did.as_str(), "did:web:localhost%3A2583");
        assert_eq!(config.handle.as_str(), "bob.test");
        assert!(crate::password::verify(
            &account.password,
            &config.password_hash
        ));
        assert_eq!(account.password.len(), 19);
        assert!(account
            .to_dotenv()
            .contains("PDS_PASSWORD_HASH='\\$argon2id\\$v=19\\$"));
    }

    #[test]
    fn preset_password_is_kept_and_short_ones_refused() {
        let account = DevAccount::generate(3000, None, Some("hunter2hunter2")).unwrap();
        assert_eq!(account.password, "hunter2hunter2");
        assert!(DevAccount::generate(3000, None, Some("short")).is_err());
        assert!(DevAccount::generate(3000, Some("no_underscores.test"), None).is_err());
    }
}
