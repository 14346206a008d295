//! Send-relay validation on arbitrary bytes: `validate_send`, `validate_agent_event` and the
//! public predicates they use.
//!
//! Invariants: no panic; every error has a message; an accepted body's relayed map (what the
//! shell sends to Google as `relayed_json`, within 250 KB) validates again, to the same
//! request (numbers to within one ULP, see `same_json`), once our own fields are added back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbm_edge::core::ids::{is_agent_id, is_e164, is_uuid};
use rbm_edge::core::time::{is_rfc3339_utc, parse_duration_secs};
use rbm_edge::core::validate::{validate_agent_event, validate_send, AgentEventRequest, MAX_BODY_BYTES};
use serde_json::{Map, Value};

/// JSON equality, except that a number may be one unit in the last place (ULP) off: without
/// serde_json's `float_roundtrip`, its float parser is not correctly rounded, a leniency
/// `validate.rs` documents. Anything more is a difference.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => {
                x == y
                    || (x.is_sign_positive() == y.is_sign_positive()
                        && x.to_bits().abs_diff(y.to_bits()) <= 1)
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    match validate_send(data) {
        Ok(req) => {
            assert!(is_e164(&req.phone_number));
            assert!(req.message_id.as_deref().is_none_or(is_uuid));
            assert!(req.agent_id.as_deref().is_none_or(is_agent_id));
            for ours in ["phoneNumber", "messageId", "agentId", "statusCallback"] {
                assert!(!req.agent_message.contains_key(ours), "{ours} is not relayed");
            }
            // What is sent to Google: within the limit, and the same JSON as the map.
            assert!(req.relayed_json.len() <= MAX_BODY_BYTES);
            assert_eq!(req.relayed_json, Value::Object(req.agent_message.clone()).to_string());
            let mut body: Map<String, Value> = req.agent_message.clone();
            body.insert("phoneNumber".into(), req.phone_number.clone().into());
            for (key, value) in [
                ("messageId", &req.message_id),
                ("agentId", &req.agent_id),
                ("statusCallback", &req.status_callback),
            ] {
                if let Some(v) = value {
                    body.insert(key.into(), v.clone().into());
                }
            }
            let bytes = serde_json::to_vec(&Value::Object(body)).expect("serialises");
            let again = validate_send(&bytes).unwrap_or_else(|e| {
                panic!("the relayed message no longer validates: {e}\n{}", String::from_utf8_lossy(&bytes))
            });
            assert_eq!(
                (&again.phone_number, &again.message_id, &again.agent_id, &again.status_callback),
                (&req.phone_number, &req.message_id, &req.agent_id, &req.status_callback)
            );
            let (a, b) = (Value::Object(again.agent_message), Value::Object(req.agent_message));
            assert!(same_json(&a, &b), "the relayed message changed on re-validation:\n{a}\n{b}");
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            assert!(!e.to_string().is_empty());
        }
    }

    match validate_agent_event(data) {
        Ok(AgentEventRequest::Read { message_id }) => {
            assert!((1..=256).contains(&message_id.len()));
            let body = serde_json::json!({"eventType": "READ", "messageId": message_id});
            let again = validate_agent_event(body.to_string().as_bytes());
            assert_eq!(again, Ok(AgentEventRequest::Read { message_id }));
        }
        Ok(AgentEventRequest::IsTyping) => {}
        Err(e) => assert!(!e.message.is_empty()),
    }

    // The predicates are total on any string.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = (is_e164(s), is_uuid(s), is_agent_id(s));
        if is_rfc3339_utc(s) {
            assert!(s.is_ascii());
            assert!(rbm_edge::core::time::parse_rfc3339_nanos(s).is_some(), "{s}");
        }
        if let Some(secs) = parse_duration_secs(s) {
            assert!(secs.is_finite() && secs.abs() <= 315_576_000_000.0, "{s}: {secs}");
        }
    }
});
