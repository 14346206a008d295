//! The request bodies of bulk reachability and file uploads on arbitrary bytes:
//! `reachability::parse_request`, `plan`, `answer`, `files::parse_url_request`
//! and `upload_kind`.
//!
//! Invariants: no panic; an accepted reachability request has 1..=10 000 distinct E.164
//! numbers, its plan covers each exactly once in chunks of at most `CHUNK`, every number in the
//! chunk of its own region; merging answers built from the plan puts every number in exactly
//! one of `reachable` / `notReachable`; an accepted URL request has an http(s) `fileUrl` and no
//! `agentId` left in the body relayed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbm_edge::core::files::{parse_url_request, upload_kind};
use rbm_edge::core::ids::is_e164;
use rbm_edge::core::reachability::{answer, parse_request, plan, CHUNK, MAX_NUMBERS};
use rbm_edge::core::region::Region;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_request(data) {
        assert!(!req.numbers.is_empty() && req.numbers.len() <= MAX_NUMBERS);
        assert!(req.numbers.iter().all(|n| is_e164(n)));
        let calls = plan(&req.numbers);
        let mut seen: Vec<&str> = Vec::new();
        let mut answers: Vec<(Region, Value)> = Vec::new();
        for (i, (region, chunk)) in calls.iter().enumerate() {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
            assert!(chunk.iter().all(|n| Region::of_number(n) == *region));
            seen.extend(chunk.iter().copied());
            // Every other chunk's numbers reachable, as RBM would list them.
            let reachable: Vec<&str> = if i % 2 == 0 { chunk.clone() } else { Vec::new() };
            let rbm = json!({"reachableUsers": reachable, "totalRandomSampleUserCount": chunk.len()});
            answers.push((*region, rbm));
        }
        seen.sort_unstable();
        let mut wanted: Vec<&str> = req.numbers.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        assert_eq!(seen, wanted, "every number in exactly one call");
        let out = answer("agent", &req.numbers, answers);
        let count = |k: &str| out[k].as_array().map_or(0, Vec::len);
        assert_eq!(count("reachable") + count("notReachable"), req.numbers.len());
    }
    if let Ok((agent, body)) = parse_url_request(data) {
        assert!(body.get("agentId").is_none());
        let url = body.get("fileUrl").and_then(Value::as_str).expect("fileUrl kept");
        assert!(url.starts_with("https://") || url.starts_with("http://"));
        let _ = agent;
    }
    let _ = upload_kind(std::str::from_utf8(data).ok());
});
