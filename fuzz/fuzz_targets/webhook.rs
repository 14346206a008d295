//! The webhook path of the pure core: envelope → signature → event, as `http/webhook.rs` runs
//! it. Each input is tried twice: as the request body itself, and as the event bytes wrapped
//! in an envelope (`{"message":{"data":"<base64>"}}`), so mutations reach the event decoder
//! without having to keep the base64 valid.
//!
//! Invariants: no panic; data signed with the token verifies, and fails under a flipped bit,
//! another token or a header of the wrong shape; a verified event decodes to the same kind and
//! message id when its raw JSON is decoded again; the forwarded document embeds that raw JSON
//! and names the same kind; the status record's KV metadata stays under KV's 1024 bytes.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rbm_edge::core::envelope::{parse_webhook_body, WebhookBody};
use rbm_edge::core::event::Decoded;
use rbm_edge::core::outbound::{forward_document, stable_event_id};
use rbm_edge::core::route::{status_record, targets, ForwardKinds};
use rbm_edge::core::signature::{sign, verify, SignatureError};
use rbm_edge::core::status::RecordMeta;
use rbm_edge::core::time::parse_rfc3339_nanos;

const TOKEN: &str = "SJENCPGJESMGUFPY";
const OTHER_TOKEN: &str = "SJENCPGJESMGUFPZ";
const RECEIVED_AT_MS: u64 = 1_546_268_484_000;

fuzz_target!(|input: &[u8]| {
    check_body(input);
    let wrapped = serde_json::json!({"message": {"data": STANDARD.encode(input), "messageId": "1"}});
    let body = serde_json::to_vec(&wrapped).expect("envelope serialises");
    match parse_webhook_body(&body) {
        Ok(WebhookBody::Event(envelope)) => assert_eq!(envelope.data, input, "base64 round trip"),
        other => panic!("a well-formed envelope was refused: {other:?}"),
    }
    check_body(&body);
});

fn check_body(body: &[u8]) {
    let envelope = match parse_webhook_body(body) {
        Ok(WebhookBody::Event(envelope)) => envelope,
        Ok(WebhookBody::Handshake { client_token, secret }) => {
            // The shell compares the token; both must round-trip through JSON untouched.
            let _ = (client_token == TOKEN, secret.len());
            return;
        }
        Err(e) => {
            assert!(!e.describe().is_empty());
            return;
        }
    };
    let data = &envelope.data;

    // Signed with the token → verifies, with or without padding and surrounding spaces.
    let sig = sign(TOKEN, data);
    assert_eq!(verify([TOKEN], data, Some(&sig)), Ok(()));
    assert_eq!(verify([OTHER_TOKEN, TOKEN], data, Some(&format!(" {} ", sig.trim_end_matches('=')))), Ok(()));
    // Anything else does not.
    assert_eq!(verify([OTHER_TOKEN], data, Some(&sig)), Err(SignatureError::Mismatch));
    let mut raw_sig = STANDARD.decode(&sig).expect("sign() writes base64");
    let flip = usize::from(data.first().copied().unwrap_or(0)) % raw_sig.len();
    raw_sig[flip] ^= 1;
    assert_eq!(verify([TOKEN], data, Some(&STANDARD.encode(&raw_sig))), Err(SignatureError::Mismatch));
    assert_eq!(verify([TOKEN], data, None), Err(SignatureError::Missing));
    // Fuzzer-chosen header strings (the Pub/Sub extras) never verify by accident.
    for header in
        [envelope.pubsub_message_id.as_deref(), envelope.subscription.as_deref()].into_iter().flatten()
    {
        if let Ok(()) = verify([TOKEN], data, Some(header)) {
            assert_eq!(
                STANDARD.decode(header.trim().trim_end_matches('=')).ok(),
                STANDARD.decode(sig.trim_end_matches('=')).ok()
            );
        }
    }

    // The verified bytes as an event.
    let decoded = match Decoded::from_bytes(data.clone()) {
        Ok(d) => d,
        Err(bad) => {
            assert_eq!(&bad.data, data, "the bytes come back for the log");
            assert!(!bad.why.is_empty());
            return;
        }
    };
    assert_eq!(decoded.raw.as_bytes(), &data[..], "raw is the signed bytes, verbatim");
    let again = Decoded::from_bytes(decoded.raw.clone().into_bytes()).expect("raw decodes again");
    assert_eq!(again.event.kind(), decoded.event.kind());
    assert_eq!(again.event.message_id(), decoded.event.message_id());
    assert_eq!(again.event, decoded.event);

    // What the pipeline does next: route, id, forward document, status metadata.
    let kinds = ForwardKinds::parse("*");
    let t = targets(&decoded.event, Some(&kinds));
    assert!(!t.is_empty(), "\"*\" forwards every kind");
    let id = stable_event_id(&decoded, envelope.pubsub_message_id.as_deref());
    assert!(id.starts_with("rbm_"));
    let doc = forward_document(&decoded, &id, RECEIVED_AT_MS, None);
    let parsed: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&doc) {
        Ok(m) => m,
        // serde_json's strict Value parser refuses some JSON the lenient event parse keeps
        // (lone surrogate escapes, numbers beyond f64 in fields we skip); the document
        // itself must still be well-formed.
        Err(_) => {
            serde_json::from_str::<serde::de::IgnoredAny>(&doc).expect("forward document is JSON");
            return;
        }
    };
    assert_eq!(parsed.get("kind").and_then(|k| k.as_str()), Some(decoded.event.kind()));
    assert_eq!(parsed.get("id").and_then(|k| k.as_str()), Some(id.as_str()));
    let raw_value: serde_json::Value = serde_json::from_str(&decoded.raw).expect("raw parses when doc does");
    assert_eq!(parsed.get("event"), Some(&raw_value));

    if status_record(&decoded.event).is_some() {
        // What the pipeline stores as the receipt's KV metadata.
        let meta = RecordMeta::from_event(&decoded.event, RECEIVED_AT_MS);
        assert!(parse_rfc3339_nanos(&meta.at).is_some(), "at is a timestamp: {}", meta.at);
        let json = serde_json::to_string(&meta).expect("metadata serialises");
        assert!(json.len() <= 1024, "KV metadata of {} bytes (limit 1024): {json}", json.len());
    }
}
