//! JSON text to a value through one reader: `serde_json::from_slice` and `from_str` are two
//! copies of the parser in the wasm, so every body is checked as UTF-8 and parsed as text.

use serde_json::Value;

/// Parses `bytes` as JSON; the error says why (not UTF-8, or serde_json's message).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}
