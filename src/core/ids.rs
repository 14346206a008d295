//! Identifier rules: which message ids may become part of a KV key.

/// Longest message id accepted into a key. RBM's own ids are UUIDs (36) or short opaque
/// strings; KV keys may be 512 bytes, and ours add a prefix and an event type.
pub const MAX_MESSAGE_ID_LEN: usize = 200;

/// A message id that is safe inside `msg:{id}:{TYPE}`: 1..=200 characters of
/// `A-Z a-z 0-9 . _ ~ = + -`. No `:` (our key separator), no `/`, no `%`, no spaces.
pub fn is_valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'=' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids() {
        for ok in ["MSG_ID", "0f8a2c1e-1b2c-4d5e-8f90-123456789abc", "Mx1a.B_c~d=e+f-g", &"a".repeat(200)] {
            assert!(is_valid_message_id(ok), "{ok}");
        }
        for bad in ["", "a:b", "a/b", "..%2F", "a b", "ü", "a\n", &"a".repeat(201)] {
            assert!(!is_valid_message_id(bad), "{bad}");
        }
    }
}
