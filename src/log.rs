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

/// `+12223334444` → `+1222***4444`: enough to correlate, not enough to identify.
pub fn mask_phone(p: Option<&str>) -> Value {
    match p {
        Some(p) if p.len() > 8 && p.is_ascii() => format!("{}***{}", &p[..5], &p[p.len() - 4..]).into(),
        Some(_) => "***".into(),
        None => Value::Null,
    }
}

/// At most `max` bytes of possibly non-UTF-8 data, for logging what could not be parsed.
pub fn excerpt(data: &[u8], max: usize) -> String {
    let cut = &data[..data.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if data.len() > max {
        s.push('…');
    }
    s
}
