//! Structured logs: one JSON object per line on the Worker's console (Workers Logs / `wrangler
//! tail` index JSON fields). Never pass a secret here; phone numbers are masked.

use serde_json::{Map, Value};

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
    let mut line = Map::new();
    line.insert("level".into(), level.into());
    line.insert("msg".into(), msg.into());
    if let Value::Object(f) = fields {
        line.extend(f);
    }
    let text = Value::Object(line).to_string();
    match level {
        "info" => worker::console_log!("{text}"),
        "warn" => worker::console_warn!("{text}"),
        _ => worker::console_error!("{text}"),
    }
}

/// A phone number for a log line: its last 4 digits at most (`***4444`).
pub fn mask_phone(p: Option<&str>) -> Value {
    p.map_or(Value::Null, |p| crate::core::redact::mask_phone(p).into())
}
