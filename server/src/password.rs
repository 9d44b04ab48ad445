//! Password hashing: argon2id at m=7168 KiB (7 MiB), t=5, p=1, one of the settings OWASP lists
//! as equivalent to its 19 MiB/t=2 minimum, about as slow to compute.
//!
//! Chosen for memory. A wasm linear memory never shrinks, so the Durable Object keeps whatever
//! one verification needed for the rest of its life, next to everything else in its 128 MB:
//! 19 MiB at the other setting, 7 MiB at this one. Hashes made with other parameters keep
//! verifying (the parameters come from the PHC string); [`needs_rehash`] tells the login to
//! replace them. Verification compares in constant time inside the argon2 crate.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory per hash, in KiB.
pub const MEMORY_KIB: u32 = 7 * 1024;
/// Passes over that memory.
pub const PASSES: u32 = 5;

fn hasher() -> Argon2<'static> {
    // The parameters are constants known to be valid.
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=7168,t=5,p=1$...`) with a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom02::getrandom(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The most memory a hash from elsewhere (a configured one) may ask for, in KiB: OWASP's
/// largest setting (46 MiB, t=1). More would crowd the Durable Object's 128 MB.
pub const MAX_MEMORY_KIB: u32 = 47_104;
/// The most work (memory in KiB × passes × lanes) such a hash may ask for: about 2.7 times
/// this module's own setting, so a login can never be made arbitrarily slow.
pub const MAX_COST: u64 = 96 * 1024;

/// Whether a PHC string's parameters are within [`MAX_MEMORY_KIB`] and [`MAX_COST`]; the
/// problem otherwise. Only such hashes are ever verified.
pub fn check_cost(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("is not a PHC string: {e}"))?;
    let param = |name: &str, default: u32| parsed.params.get_decimal(name).unwrap_or(default);
    let (m, t, p) = (
        param("m", Params::DEFAULT_M_COST),
        param("t", Params::DEFAULT_T_COST),
        param("p", Params::DEFAULT_P_COST),
    );
    let cost = u64::from(m) * u64::from(t) * u64::from(p);
    if m > MAX_MEMORY_KIB || cost > MAX_COST {
        return Err(format!(
            "asks for m={m} KiB, t={t}, p={p}: at most m={MAX_MEMORY_KIB} and m*t*p={MAX_COST} \
             are accepted (this server hashes at m={MEMORY_KIB}, t={PASSES}, p=1)"
        ));
    }
    Ok(())
}

/// Whether `password` matches the PHC string `phc`. A malformed `phc`, or one over the cost
/// limits ([`check_cost`]), never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if check_cost(phc).is_err() {
        return false;
    }
    match PasswordHash::new(phc) {
        // The parameters come from the PHC string, so older hashes keep verifying.
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether a (verified) hash was made with other parameters than [`hash`] uses now, and should
/// be replaced by a fresh one while the password is at hand.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let current = (
        Some(MEMORY_KIB),
        Some(PASSES),
        Some(1),
        Some(argon2::ARGON2ID_IDENT),
    );
    let param = |name: &str| parsed.params.get_decimal(name);
    (param("m"), param("t"), param("p"), Some(parsed.algorithm)) != current
        || parsed.version != Some(Version::V0x13.into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_then_verify() {
        let phc = super::hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{phc}");
        assert!(super::verify("correct horse", &phc));
        assert!(!super::verify("correct horse ", &phc));
        assert!(!super::verify("correct horse", "$argon2id$garbage"));
        assert_ne!(super::hash("correct horse").unwrap(), phc, "salts differ");
        assert!(!super::needs_rehash(&phc));
    }

    /// A hash made at the earlier 19 MiB setting still verifies, and is due for a rehash.
    #[test]
    fn older_parameters_verify_and_need_a_rehash() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
        let old = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"correct horse", &SaltString::encode_b64(&[7; 16]).unwrap())
            .unwrap()
            .to_string();
        assert!(old.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{old}");
        assert!(super::verify("correct horse", &old));
        assert!(super::needs_rehash(&old));
        assert!(!super::needs_rehash("not a phc string"));
    }

    /// A hash asking for too much memory or work is refused before any is spent.
    #[test]
    fn costly_parameters_are_refused() {
        let salt = "c2FsdHNhbHRzYWx0c2FsdA";
        let hash = "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFy";
        let phc = |params: &str| format!("$argon2id$v=19${params}${salt}${hash}");
        assert!(super::check_cost(&phc("m=7168,t=5,p=1")).is_ok());
        assert!(super::check_cost(&phc("m=47104,t=1,p=1")).is_ok());
        assert!(super::check_cost(&phc("m=19456,t=2,p=1")).is_ok());
        for costly in ["m=65536,t=1,p=1", "m=19456,t=6,p=1", "m=7168,t=5,p=4"] {
            let err = super::check_cost(&phc(costly)).unwrap_err();
            assert!(err.contains("at most"), "{costly}: {err}");
            // Refused in well under the time such a hash would take.
            let started = std::time::Instant::now();
            assert!(!super::verify("x", &phc(costly)));
            assert!(started.elapsed() < std::time::Duration::from_millis(50));
        }
    }
}
