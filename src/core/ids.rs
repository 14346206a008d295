//! Identifier rules: message ids (which may become part of a KV key), agent ids, E.164
//! phone numbers and UUIDs.

/// Longest message id accepted into a key. RBM's own ids are UUIDs (36) or short opaque
/// strings; KV keys may be 512 bytes, and ours add a prefix and an event type.
pub const MAX_MESSAGE_ID_LEN: usize = 200;
/// Longest RBM agent id accepted.
pub const MAX_AGENT_ID_CHARS: usize = 128;

/// A message id that is safe inside `msg:{id}:{TYPE}`: 1..=200 characters of
/// `A-Z a-z 0-9 . _ ~ = + -`. No `:` (our key separator), no `/`, no `%`, no spaces.
pub fn is_valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'=' | b'+' | b'-'))
}

/// An RBM agent id (`my_agent_abc123_agent`): 1..=128 of letters, digits, `_`, `.`, `-`.
/// Safe to put in a URL query without escaping.
pub fn is_agent_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_AGENT_ID_CHARS
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `+` then 8 to 15 digits, the first 1-9.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// `8-4-4-4-12` hexadecimal digits, any case, any version.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
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

    #[test]
    fn e164_boundaries() {
        assert!(is_e164("+12345678")); // 8 digits
        assert!(is_e164("+123456789012345")); // 15 digits
        assert!(!is_e164("+1234567")); // 7
        assert!(!is_e164("+1234567890123456")); // 16
        assert!(!is_e164("+01234567890"));
        assert!(!is_e164("12223334444"));
        assert!(!is_e164("+1 222 333 4444"));
        assert!(!is_e164("+1222333444٤")); // Arabic-Indic digit
        assert!(!is_e164("+"));
        assert!(!is_e164(""));
    }

    #[test]
    fn uuid_shapes() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(is_uuid("FFFFFFFF-ffff-7FFF-bfff-FFFFFFFFFFFF"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-4266141740000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456_426614174000"));
        assert!(!is_uuid("g23e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("{123e4567-e89b-12d3-a456-426614174000}"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400é"));
    }
}
