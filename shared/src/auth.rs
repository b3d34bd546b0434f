//! Tenant API keys: random, shown once, stored only as a SHA-256 hash.

use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "uk_";

/// Generates a new API key (`uk_` + 43 base64url characters = 256 random bits).
pub fn generate_key() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The stored form of a key. Keys carry 256 random bits, so a fast hash is safe.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Extracts the key from an `Authorization: Bearer <key>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty() && key.len() <= 256).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_stably() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 46);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_eq!(hash_key(&a).len(), 64);
    }

    #[test]
    fn only_bearer_credentials_are_read() {
        assert_eq!(bearer(Some("Bearer uk_x")), Some("uk_x"));
        assert_eq!(bearer(Some("bearer  uk_x ")), Some("uk_x"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
