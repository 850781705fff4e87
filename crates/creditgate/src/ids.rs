//! Ids: prefixed (`org_…`, `key_…`, `hold_…`, `txn_…`, `price_…`, `req_…`), time-ordered
//! for those the server makes up, and derived (a hash) for those that must come out the same
//! on a retry: the ledger id behind an `Idempotency-Key`, a usage event or a settlement.

use std::sync::atomic::{AtomicU64, Ordering};

/// Makes new ids; injected so tests can make them predictable.
pub trait IdSource: Send + Sync + 'static {
    /// A new id with `prefix` (`"org"` → `org_…`).
    fn generate(&self, prefix: &str) -> String;
}

/// Time-ordered random ids: 10 characters of milliseconds, 16 of randomness (base32).
#[derive(Debug, Default)]
pub struct RandomIds;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl IdSource for RandomIds {
    fn generate(&self, prefix: &str) -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let random: u128 = rand::random();
        let mut out = String::with_capacity(prefix.len() + 27);
        out.push_str(prefix);
        out.push('_');
        for shift in (0..10).rev() {
            out.push(ALPHABET[((ms >> (shift * 5)) & 31) as usize] as char);
        }
        for shift in (0..16).rev() {
            out.push(ALPHABET[((random >> (shift * 5)) & 31) as usize] as char);
        }
        out
    }
}

/// `bytes` random bytes as lowercase hex: the one source of secrets (API keys, sessions,
/// sign-in links, webhook signing secrets, generated tokens) and of random nonces; ids come
/// from an [`IdSource`].
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// Sequential ids for tests: `org_000001`, `org_000002`, …
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdSource for SequentialIds {
    fn generate(&self, prefix: &str) -> String {
        format!("{prefix}_{:06}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

pub use creditgate_domain::ids::derived;

/// Whether `id` looks like an id with `prefix` (so a malformed one is a 400, not a lookup).
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// A new secret (a sign-in link's, a session's): 32 random bytes, hex.
pub fn new_secret() -> String {
    random_hex(32)
}

/// The stored form of a secret: SHA-256, hex (only this is kept).
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let a = RandomIds.generate("org");
        assert!(is_valid("org", &a), "{a}");
        assert_eq!(a.len(), 30);
        assert_ne!(a, RandomIds.generate("org"));
        assert_eq!(derived("txn", &["a", "b"]), derived("txn", &["a", "b"]));
        assert_ne!(derived("txn", &["ab", "c"]), derived("txn", &["a", "bc"]));
        assert!(is_valid("txn", &derived("txn", &["x"])));
        assert!(!is_valid("org", "org_"));
        assert!(!is_valid("org", "key_abc"));
        assert!(!is_valid("org", "org_a-b"));
        assert_eq!(SequentialIds::default().generate("key"), "key_000001");
    }
}
