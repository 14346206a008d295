//! The status projection and fold, on arbitrary record sequences and metadata.
//!
//! Input, as text (lossy UTF-8): the first line is a sequence of record types, one byte each
//! (minus `'0'`, modulo 7, so `0`..`6` are SENT, SEND_FAILED, REVOKE_REQUESTED, DELIVERED, READ,
//! TTL_EXPIRATION_REVOKED, TTL_EXPIRATION_REVOKE_FAILED); every further line is one record,
//! `type|at|receivedAt|source|eventId|phoneNumber|agentId|httpStatus` (source `a` = API, else
//! webhook; an optional field is absent when the line has fewer fields).
//!
//! Invariants: `project` of the sequence equals `project` of its sorted, deduplicated set and
//! of the reversed sequence; `fold` never panics and its status is `project` of its types;
//! with one record per type (what KV's one-key-per-type gives) the folded view does not depend
//! on the order of the records; `RecordMeta::bounded` keeps the metadata within KV's 1024
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbm_edge::core::status::{fold, project, RecordMeta, RecordType, Source, Status};

fn record_type(b: u8) -> RecordType {
    RecordType::ALL[usize::from(b.wrapping_sub(b'0')) % RecordType::ALL.len()]
}

fn record(line: &str) -> (RecordType, RecordMeta) {
    let mut f = line.split('|');
    let t = record_type(f.next().and_then(|t| t.bytes().next()).unwrap_or(0));
    let mut next = || f.next().map(String::from);
    let at = next().unwrap_or_default();
    let received_at = next().unwrap_or_default();
    let source = if next().as_deref() == Some("a") { Source::Api } else { Source::Webhook };
    let (event_id, phone_number, agent_id) = (next(), next(), next());
    let http_status = next().and_then(|s| s.parse().ok());
    (t, RecordMeta { at, received_at, source, event_id, phone_number, agent_id, http_status, fallback: None })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let seq: Vec<RecordType> = lines.next().unwrap_or_default().bytes().map(record_type).collect();

    let want = project(seq.iter().copied());
    let mut set = seq.clone();
    set.sort();
    set.dedup();
    assert_eq!(project(set.iter().copied()), want, "set of {seq:?}");
    assert_eq!(project(seq.iter().rev().copied()), want, "reverse of {seq:?}");
    assert_eq!(want.is_none(), seq.is_empty());
    if seq.contains(&RecordType::Delivered) {
        assert!(want >= Some(Status::Delivered));
    }

    let recs: Vec<(RecordType, RecordMeta)> = lines.take(32).map(record).collect();
    let types: Vec<RecordType> = recs.iter().map(|(t, _)| *t).collect();
    let view = fold("m", recs.clone());
    assert_eq!(view.as_ref().map(|v| v.status), project(types.iter().copied()));
    if let Some(v) = &view {
        assert_eq!(v.events.len(), recs.len());
        let _ = serde_json::to_string(v).expect("the view serialises");
    }

    // One record per type: the view is a function of the set of records.
    let mut unique: Vec<(RecordType, RecordMeta)> = Vec::new();
    for (t, m) in &recs {
        if !unique.iter().any(|(u, _)| u == t) {
            unique.push((*t, m.clone()));
        }
    }
    let forward = fold("m", unique.clone());
    let mut reversed = unique.clone();
    reversed.reverse();
    assert_eq!(fold("m", reversed), forward, "fold depends on record order");
    if unique.len() > 2 {
        let mut rotated = unique.clone();
        rotated.rotate_left(1);
        assert_eq!(fold("m", rotated), forward, "fold depends on record order");
    }

    for (_, m) in recs {
        let b = m.bounded();
        let json = serde_json::to_string(&b).expect("metadata serialises");
        // The limit `bounded` exists for: KV metadata is at most 1024 bytes of JSON. The shell
        // writes `at` and `receivedAt` as timestamps, so the promise is checked for short
        // printable ASCII there and anything at all in the optional fields.
        let stamp = |s: &str| s.len() <= 64 && s.bytes().all(|c| c.is_ascii_graphic());
        if stamp(&b.at) && stamp(&b.received_at) {
            assert!(json.len() <= 1024, "KV metadata of {} bytes (limit 1024): {json}", json.len());
        }
    }
});
