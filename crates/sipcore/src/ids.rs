//! Random identifiers: Via branch, From/To tag, Call-ID.
//!
//! Plain hex from the thread-local RNG: cheap enough for the hot path (no UUID formatting) and
//! unique enough for a lab (64 bits per branch/tag, 128 per Call-ID).

use std::fmt::Write;

/// RFC 3261 §8.1.1.7 magic cookie every RFC 3261 branch starts with.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

fn hex(words: &[u64], prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + words.len() * 16);
    s.push_str(prefix);
    for w in words {
        // Writing to a String cannot fail.
        let _ = write!(s, "{w:016x}");
    }
    s
}

/// A fresh Via branch: `z9hG4bK` + 16 hex digits.
pub fn branch() -> String {
    hex(&[rand::random::<u64>()], BRANCH_MAGIC)
}

/// A fresh From/To tag: 16 hex digits.
pub fn tag() -> String {
    hex(&[rand::random::<u64>()], "")
}

/// A fresh Call-ID: 32 hex digits (no host part; RFC 3261 makes it optional).
pub fn call_id() -> String {
    hex(&[rand::random::<u64>(), rand::random::<u64>()], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_uniqueness() {
        let b = branch();
        assert!(b.starts_with(BRANCH_MAGIC));
        assert_eq!(b.len(), 7 + 16);
        assert_ne!(branch(), branch());
        assert_eq!(tag().len(), 16);
        assert_eq!(call_id().len(), 32);
        assert_ne!(call_id(), call_id());
    }
}
