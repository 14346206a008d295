//! Structured logs: one JSON object per line on the Worker's console (Workers Logs / `wrangler
//! tail` index JSON fields). Never pass a secret here; phone numbers are masked.

use serde_json::Value;

pub fn info(msg: &str, fields: Value) {
    emit("info", msg, fields)
}

pub fn warn(msg: &str, fields: Value) {
    emit("warn", msg, fields)
}

pub fn error(msg: &str, fields: Value) {
    emit("error", msg, fields)
}

fn emit(level: &str, msg: &str, fields: Value) {
    // Written directly (`level`, `msg`, then the fields' own object), not re-collected into a
    // new map: one serialisation, no second tree.
    let mut text = String::with_capacity(160);
    text.push_str("{\"level\":\"");
    text.push_str(level);
    text.push_str("\",\"msg\":");
    text.push_str(&Value::from(msg).to_string());
    match fields {
        Value::Object(f) if !f.is_empty() => {
            let rest = Value::Object(f).to_string();
            text.push(',');
            text.push_str(&rest[1..]);
        }
        _ => text.push('}'),
    }
    let text = wasm_bindgen::JsValue::from_str(&text);
    match level {
        "info" => web_sys::console::log_1(&text),
        "warn" => web_sys::console::warn_1(&text),
        _ => web_sys::console::error_1(&text),
    }
}

/// A phone number for a log line: its last 4 digits at most (`***4444`).
pub fn mask_phone(p: Option<&str>) -> Value {
    p.map_or(Value::Null, |p| crate::core::redact::mask_phone(p).into())
}
