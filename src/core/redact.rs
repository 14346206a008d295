//! What may appear in a log line: phone numbers reduced to their last 4 digits, and raw
//! events (unknown kinds, undecodable data) with numbers and whatever the user wrote removed.
//! Logs are read by more people, and kept longer, than the data they describe.

use serde_json::Value;

/// `+12223334444` → `***4444`: enough to correlate, not enough to identify.
pub fn mask_phone(p: &str) -> String {
    let digits: Vec<char> = p.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 8 {
        return "***".into();
    }
    let tail: String = digits[digits.len() - 4..].iter().collect();
    format!("***{tail}")
}

/// Keys whose values are what a user wrote, sent or where they are.
const CONTENT_KEYS: &[&str] =
    &["text", "postbackData", "latitude", "longitude", "fileUri", "fileName", "title", "description", "body"];

/// A raw event for a log line: JSON with every string that looks like a phone number masked
/// and user content replaced by `"[redacted]"`; anything else (not JSON) by its length only.
pub fn redact_event(raw: &[u8]) -> String {
    match super::json::parse(raw) {
        Ok(mut v) => {
            redact_value(&mut v);
            v.to_string()
        }
        Err(_) => format!("[{} bytes, not JSON]", raw.len()),
    }
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if CONTENT_KEYS.contains(&k.as_str()) {
                    *val = Value::String("[redacted]".into());
                } else {
                    redact_value(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::String(s) if looks_like_phone(s) => *s = mask_phone(s),
        _ => {}
    }
}

/// A request path for a log line: phone-number segments (`/v1/phones/%2B12223334444/…`)
/// reduced to their last 4 digits.
pub fn redact_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let digits = seg
            .strip_prefix("%2B")
            .or_else(|| seg.strip_prefix("%2b"))
            .unwrap_or(seg)
            .trim_start_matches('+');
        if digits.len() >= 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str("***");
            out.push_str(&digits[digits.len() - 4..]);
        } else {
            out.push_str(seg);
        }
    }
    out
}

/// `+` (optional) and 8 or more digits, with the usual separators.
fn looks_like_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 8 && s.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_keep_four_digits() {
        assert_eq!(mask_phone("+12223334444"), "***4444");
        assert_eq!(mask_phone("+1 (222) 333-4444"), "***4444");
        assert_eq!(mask_phone("+1234"), "***");
        assert_eq!(mask_phone(""), "***");
    }

    #[test]
    fn paths_lose_numbers() {
        assert_eq!(redact_path("/v1/phones/%2B12223334444/capabilities"), "/v1/phones/***4444/capabilities");
        assert_eq!(redact_path("/v1/phones/+12223334444/live"), "/v1/phones/***4444/live");
        assert_eq!(redact_path("/v1/messages/0f8a2c1e-1b2c"), "/v1/messages/0f8a2c1e-1b2c");
        assert_eq!(redact_path("/healthz"), "/healthz");
    }

    #[test]
    fn events_lose_numbers_and_content() {
        let raw = br#"{"senderPhoneNumber":"+12223334444","agentId":"a","text":"my pin is 1234","future":{"contact":"+447700900123","n":[1,"+33612345678"]},"suggestionResponse":{"postbackData":"secret"},"location":{"latitude":1.5}}"#;
        let out = redact_event(raw);
        for gone in ["2223334444", "7700900123", "612345678", "my pin", "secret", "1.5"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(out.contains("***4444") && out.contains(r#""agentId":"a""#), "{out}");
        assert_eq!(redact_event(b"\xff+12223334444"), "[13 bytes, not JSON]");
    }
}
