//! `event::Decoded::from_bytes` on arbitrary bytes (what `message.data` decodes to).
//!
//! Invariants: no panic; on success `raw` is the input verbatim, one JSON object (the shell
//! embeds it unparsed in the documents it builds), and decoding `raw` again gives an equal
//! event; on failure the bytes come back for the log. The accessors, the route and the
//! outbound id/document are total on every decoded event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbm_edge::core::event::{Decoded, RbmEvent};
use rbm_edge::core::outbound::{forward_document, stable_event_id};
use rbm_edge::core::route::{status_record, targets, ForwardKinds};
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let decoded = match Decoded::from_bytes(data.to_vec()) {
        Ok(d) => d,
        Err(bad) => {
            assert_eq!(bad.data, data);
            assert!(!bad.why.is_empty());
            return;
        }
    };
    assert_eq!(decoded.raw.as_bytes(), data, "raw is kept verbatim");
    assert_eq!(decoded.raw.trim_start().as_bytes().first(), Some(&b'{'), "raw is an object");
    let raw: &RawValue = serde_json::from_str(&decoded.raw).expect("raw is one JSON value");
    assert!(raw.get().starts_with('{'));

    let again = Decoded::from_bytes(decoded.raw.clone().into_bytes()).expect("raw decodes again");
    assert_eq!(again.event, decoded.event);
    assert_eq!(again.raw, decoded.raw);

    let e = &decoded.event;
    if matches!(e, RbmEvent::Unknown) {
        assert_eq!(e.kind(), "unknown");
    }
    let _ = (e.agent_id(), e.phone_number(), e.message_id(), e.event_id(), e.send_time());
    let _ = status_record(e);
    let _ = targets(e, Some(&ForwardKinds::default()));
    let id = stable_event_id(&decoded, None);
    assert_eq!(id, stable_event_id(&again, None), "the stable id is stable");
    let doc = forward_document(&decoded, &id, 0, Some("fuzz"));
    assert!(!doc.is_empty());
    serde_json::from_str::<serde::de::IgnoredAny>(&doc).expect("forward document is JSON");
});
