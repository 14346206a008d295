//! Bulk reachability (`POST /v1/reachability`) over RBM's `users.batchGet`: the request is
//! checked, its numbers grouped by region and cut into chunks (one regional call each), and
//! the regional answers merged into one.

use serde_json::{json, Map, Value};

use super::ids::is_e164;
use super::region::Region;
use super::validate::ValidationError;

/// Most numbers in one request.
pub const MAX_NUMBERS: usize = 10_000;
/// Most numbers in one `users.batchGet` call. Google caps the method at 600 queries a minute,
/// not by size; chunks keep each call (and its random sample) a predictable size, and the
/// largest request at 12 calls (10 000 numbers over three regions).
pub const CHUNK: usize = 1_000;

/// A checked request: distinct numbers in request order, and the agent named, if any.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub numbers: Vec<String>,
    pub agent_id: Option<String>,
}

fn err(path: &str, message: &str) -> ValidationError {
    ValidationError { path: path.into(), message: message.into() }
}

/// `{"phoneNumbers":[E.164…],"agentId"?}`.
pub fn parse_request(body: &[u8]) -> Result<Request, ValidationError> {
    let v: Value =
        super::json::parse(body).map_err(|e| err("", &format!("the body is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| err("", "the body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !["phoneNumbers", "agentId"].contains(&k.as_str())) {
        return Err(err(k, "is not a reachability field (phoneNumbers, agentId)"));
    }
    let agent_id = match obj.get("agentId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(err("agentId", "must be a string")),
    };
    let list = obj
        .get("phoneNumbers")
        .and_then(Value::as_array)
        .ok_or_else(|| err("phoneNumbers", "must be an array of E.164 numbers"))?;
    if list.is_empty() {
        return Err(err("phoneNumbers", "must list at least one number"));
    }
    if list.len() > MAX_NUMBERS {
        return Err(err(
            "phoneNumbers",
            &format!("lists {} numbers; at most {MAX_NUMBERS} per request", list.len()),
        ));
    }
    // serde_json's map as the set: its code is in the wasm already, a BTreeSet's would not be.
    let mut seen = Map::new();
    let mut numbers = Vec::with_capacity(list.len());
    for (i, n) in list.iter().enumerate() {
        match n.as_str() {
            Some(s) if is_e164(s) => {
                if seen.insert(s.to_string(), Value::Null).is_none() {
                    numbers.push(s.to_string());
                }
            }
            _ => {
                return Err(err(&format!("phoneNumbers[{i}]"), "must be an E.164 number, like +12223334444"))
            }
        }
    }
    Ok(Request { numbers, agent_id })
}

/// The regional calls for `numbers`: (region, its chunk), regions in `Region::ALL` order,
/// numbers in request order.
pub fn plan(numbers: &[String]) -> Vec<(Region, Vec<&str>)> {
    let mut calls = Vec::new();
    for region in Region::ALL {
        let mine: Vec<&str> =
            numbers.iter().map(String::as_str).filter(|n| Region::of_number(n) == region).collect();
        for chunk in mine.chunks(CHUNK) {
            calls.push((region, chunk.to_vec()));
        }
    }
    calls
}

/// The `users.batchGet` body of one call.
pub fn batch_body(numbers: &[&str], agent: &str) -> String {
    json!({"users": numbers, "agentId": agent}).to_string()
}

/// Adds one chunk's answer into its region's: `reachableUsers` concatenated, counts summed,
/// `reachableUsersMap` merged key by key; other fields kept from the first answer.
fn merge_into(acc: &mut Map<String, Value>, answer: Value) {
    let Value::Object(answer) = answer else { return };
    for (k, v) in answer {
        match acc.get_mut(&k) {
            None => {
                acc.insert(k, v);
            }
            Some(old) => merge_value(old, v),
        }
    }
}

fn merge_value(old: &mut Value, new: Value) {
    match (old, new) {
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                *a = (x + y).into();
            }
        }
        (Value::Object(a), Value::Object(b)) => merge_into(a, Value::Object(b)),
        _ => {}
    }
}

/// The answer: `{"agentId","reachable","notReachable","byRegion"}`, reachable and not
/// reachable in request order. `answers` are RBM's, one per call of [`plan`], in its order
/// (a region's chunks are consecutive): each region's are merged into one.
pub fn answer(agent: &str, numbers: &[String], answers: Vec<(Region, Value)>) -> Value {
    let mut by_region: Vec<(Region, Map<String, Value>)> = Vec::new();
    for (region, rbm) in answers {
        match by_region.last_mut() {
            Some((r, acc)) if *r == region => merge_into(acc, rbm),
            _ => {
                let mut acc = Map::new();
                merge_into(&mut acc, rbm);
                by_region.push((region, acc));
            }
        }
    }
    let mut reachable = Map::new();
    for (_, a) in &by_region {
        for n in a.get("reachableUsers").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = n.as_str() {
                reachable.insert(n.to_string(), Value::Null);
            }
        }
    }
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for n in numbers {
        let side = if reachable.contains_key(n) { &mut yes } else { &mut no };
        side.push(Value::String(n.clone()));
    }
    let mut regions = Map::new();
    for (r, a) in by_region {
        regions.insert(r.as_str().to_string(), Value::Object(a));
    }
    json!({"agentId": agent, "reachable": yes, "notReachable": no, "byRegion": regions})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<Request, ValidationError> {
        parse_request(v.to_string().as_bytes())
    }

    #[test]
    fn requests_are_checked_and_deduplicated() {
        let r = req(json!({"phoneNumbers": ["+447700900001", "+14155550100", "+447700900001"]})).unwrap();
        assert_eq!(r.numbers, ["+447700900001", "+14155550100"]);
        assert_eq!(r.agent_id, None);
        let e = req(json!({"phoneNumbers": ["+14155550100", "0044 7700"]})).unwrap_err();
        assert_eq!(e.path, "phoneNumbers[1]");
        assert_eq!(req(json!({"phoneNumbers": []})).unwrap_err().path, "phoneNumbers");
        assert_eq!(req(json!({})).unwrap_err().path, "phoneNumbers");
        assert_eq!(req(json!({"phoneNumbers": ["+14155550100"], "agent": "x"})).unwrap_err().path, "agent");
        let many: Vec<String> = (0..MAX_NUMBERS + 1).map(|i| format!("+1415{i:07}")).collect();
        assert!(req(json!({"phoneNumbers": many})).unwrap_err().message.contains("10000"));
        assert!(parse_request(b"[").is_err());
    }

    #[test]
    fn plans_group_by_region_and_chunk() {
        let mut numbers: Vec<String> = (0..2_500).map(|i| format!("+44770{i:07}")).collect();
        numbers.push("+14155550100".into());
        numbers.push("+6591234567".into());
        let calls = plan(&numbers);
        let sizes: Vec<(Region, usize)> = calls.iter().map(|(r, c)| (*r, c.len())).collect();
        assert_eq!(
            sizes,
            [
                (Region::Us, 1),
                (Region::Europe, 1000),
                (Region::Europe, 1000),
                (Region::Europe, 500),
                (Region::Asia, 1)
            ]
        );
        assert_eq!(calls[1].1[0], "+447700000000");
    }

    #[test]
    fn answers_merge_per_region() {
        let answers = vec![
            (Region::Us, json!({"reachableUsers": [], "reachableUsersMap": {"a": ["+14155550100"]}})),
            (
                Region::Us,
                json!({"reachableUsers": [], "reachableUsersMap": {"a": ["+14155550102"], "b": []}}),
            ),
            (
                Region::Europe,
                json!({"reachableUsers": ["+447700900001"], "totalRandomSampleUserCount": 3, "reachableRandomSampleUserCount": 1}),
            ),
            (
                Region::Europe,
                json!({"reachableUsers": ["+447700900003"], "totalRandomSampleUserCount": 4, "reachableRandomSampleUserCount": 2, "reachableUsersMap": {"a": ["+1"]}}),
            ),
        ];
        let numbers: Vec<String> =
            ["+447700900001", "+447700900002", "+447700900003", "+14155550100"].map(String::from).into();
        let out = answer("agent_x", &numbers, answers);
        assert_eq!(out["reachable"], json!(["+447700900001", "+447700900003"]));
        assert_eq!(out["notReachable"], json!(["+447700900002", "+14155550100"]));
        assert_eq!(out["byRegion"]["europe"]["totalRandomSampleUserCount"], 7);
        assert_eq!(out["byRegion"]["europe"]["reachableRandomSampleUserCount"], 3);
        assert_eq!(
            out["byRegion"]["us"]["reachableUsersMap"],
            json!({"a": ["+14155550100", "+14155550102"], "b": []})
        );
        assert_eq!(out["agentId"], "agent_x");
    }
}
