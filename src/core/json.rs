//! JSON text to a value through one reader: `serde_json::from_slice` and `from_str` are two
//! copies of the parser in the wasm, so every body is checked as UTF-8 and parsed as text.
//! And the length of a string as JSON, without writing it.

use serde_json::Value;

/// Parses `bytes` as JSON; the error says why (not UTF-8, or serde_json's message).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// The length of `s` as a JSON string literal, quotes included, as `serde_json` writes it:
/// `"` and `\\` escaped in two bytes, control characters in two (`\\n`) or six (`\\u001f`).
pub fn str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_len_is_the_written_length() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀\u{7f}\u{2028}");
        for s in ["", "plain", "q\"b\\", "\u{0}\u{1f}\n\t", &all] {
            assert_eq!(str_len(s), serde_json::to_string(s).unwrap().len(), "{s:?}");
        }
    }
}
