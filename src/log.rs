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

/// An `info` line whose fields are a struct: serialised in one pass, without building a map
/// first (the webhook logs every event).
pub fn info_of(msg: &str, fields: &impl serde::Serialize) {
    write("info", msg, &serde_json::to_string(fields).unwrap_or_default())
}

fn emit(level: &str, msg: &str, fields: Value) {
    match fields {
        Value::Object(f) if !f.is_empty() => write(level, msg, &Value::Object(f).to_string()),
        _ => write(level, msg, ""),
    }
}

/// Writes `level`, `msg`, then the members of `fields` (a JSON object's text, or empty).
fn write(level: &str, msg: &str, fields: &str) {
    let mut text = String::with_capacity(64 + fields.len());
    text.push_str("{\"level\":\"");
    text.push_str(level);
    text.push_str("\",\"msg\":");
    text.push_str(&Value::from(msg).to_string());
    match fields.strip_prefix('{') {
        Some(rest) if rest != "}" => {
            text.push(',');
            text.push_str(rest);
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
