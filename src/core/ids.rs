//! Identifier rules: which message ids may become part of a KV key, and UUIDv4 formatting.

/// Longest message id accepted into a key. RBM's own ids are UUIDs (36) or short opaque
/// strings; KV keys may be 512 bytes, and ours add a prefix and an event type.
pub const MAX_MESSAGE_ID_LEN: usize = 200;

/// A message id that is safe inside `msg:{id}:{TYPE}`: 1..=200 characters of
/// `A-Z a-z 0-9 . _ ~ = + -`. No `:` (our key separator), no `/`, no `%`, no spaces.
pub fn is_valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'=' | b'+' | b'-')
        })
}

/// Formats 16 random bytes as an RFC 4122 version-4 UUID (lowercase). The caller supplies the
/// randomness (WebCrypto in the Worker), which keeps this function pure and testable.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids() {
        for ok in [
            "MSG_ID",
            "0f8a2c1e-1b2c-4d5e-8f90-123456789abc",
            "Mx1a.B_c~d=e+f-g",
            &"a".repeat(200),
        ] {
            assert!(is_valid_message_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a:b",
            "a/b",
            "..%2F",
            "a b",
            "ü",
            "a\n",
            &"a".repeat(201),
        ] {
            assert!(!is_valid_message_id(bad), "{bad}");
        }
    }

    #[test]
    fn uuid_v4_format() {
        let u = uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let u = uuid_v4([0; 16]);
        assert_eq!(u, "00000000-0000-4000-8000-000000000000");
        assert!(crate::core::validate::is_uuid(&u));
    }
}
