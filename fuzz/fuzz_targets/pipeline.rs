//! The pipeline planner (`core::pipeline`) and the conversation ops on arbitrary events,
//! known records and modes.
//!
//! Input: byte 0 picks the mode and settings, byte 1 the known records (a bit per record
//! type) and whether a callback URL is known; the rest is the event's bytes.
//!
//! Invariants: no panic; an enqueued job fits a queue message, reads back as the same event
//! and embeds it verbatim; typing is pushed, never queued; at most one record, one
//! conversation op and one forward per event, in that order; every conversation op survives
//! its JSON round trip; a callback is owed only with a known URL and only when the status
//! changes; `Job::from_json`, `Op::from_json` and `InboundRecord::from_op` are total on
//! arbitrary text, a record's view is one JSON object, and every user message op the planner
//! makes is recorded from its text with its own id and time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbm_edge::core::conversation::{conversation_of, op_for_event, InboundRecord, Op};
use rbm_edge::core::event::Decoded;
use rbm_edge::core::pipeline::{
    intake, plan, status_change_callback, Effect, Intake, Job, Known, Mode, PipelineConfig, Receipt,
    MAX_QUEUE_MESSAGE_BYTES,
};
use rbm_edge::core::route::ForwardKinds;
use rbm_edge::core::status::{project, RecordMeta, RecordType};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Job::from_json(text);
        let _ = Op::from_json(text);
        if let Some(rec) = InboundRecord::from_op(text) {
            let view: serde_json::Value = serde_json::from_str(&rec.view).expect("a view is JSON");
            assert!(view.is_object(), "{}", rec.view);
        }
    }
    let [settings, records, rest @ ..] = data else { return };
    let Ok(decoded) = Decoded::from_bytes(rest.to_vec()) else { return };
    let kinds = if settings & 4 != 0 { ForwardKinds::parse("*") } else { ForwardKinds::default() };
    let cfg = PipelineConfig {
        forward: (settings & 2 != 0).then_some(&kinds),
        default_agent: (settings & 8 != 0).then_some("default_agent"),
        mode: if settings & 1 != 0 { Mode::Inline } else { Mode::Queue },
    };
    let receipt = Receipt { received_at: 1_767_225_600_000, pubsub_message_id: None, publish_time: None, webhook_type: None };

    match intake(&decoded, &receipt, &cfg) {
        Intake::Enqueue(job) => {
            assert_eq!(cfg.mode, Mode::Queue);
            assert!(job.len() <= MAX_QUEUE_MESSAGE_BYTES);
            match Job::from_json(&job) {
                Ok(Job::Event { event, meta }) => {
                    // Verbatim but for the whitespace around the object (JSON's own boundaries).
                    assert_eq!(event, decoded.raw.trim_matches([' ', '\t', '\n', '\r']));
                    assert_eq!(meta, receipt);
                }
                other => panic!("enqueued job does not read back: {other:?}"),
            }
        }
        Intake::Typing { .. } => assert!(plan(&decoded, &receipt, &cfg).iter().all(|e| matches!(e, Effect::Conversation { op: Op::Typing, .. }))),
        Intake::Acknowledge => assert!(plan(&decoded, &receipt, &cfg).is_empty()),
        Intake::ApplyInline => {}
    }

        // The webhook's cheap question and the op it stands for always agree.
    let place = conversation_of(&decoded, cfg.default_agent);
    let op = op_for_event(&decoded, receipt.received_at, cfg.default_agent);
    assert_eq!(place.is_some(), op.is_some());
    assert_eq!(place.map(|(_, _, typing)| typing), op.as_ref().map(|(_, _, o)| *o == Op::Typing));
    let effects = plan(&decoded, &receipt, &cfg);
    let rank = |e: &Effect| match e {
        Effect::Record { .. } | Effect::Skip { .. } => 0,
        Effect::Conversation { .. } => 1,
        Effect::Forward { .. } => 2,
    };
    assert!(effects.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "effects out of order: {effects:?}");
    for kind in 0..3 {
        assert!(effects.iter().filter(|e| rank(e) == kind && !matches!(e, Effect::Skip { .. })).count() <= 1);
    }
    for e in &effects {
        if let Effect::Conversation { op, .. } = e {
            let json = serde_json::to_string(op).expect("ops serialize");
            assert_eq!(Op::from_json(&json).as_ref(), Ok(op), "{json}");
            if let Op::Inbound { message } = op {
                let rec = InboundRecord::from_op(&json).expect("an inbound op is recorded from its text");
                assert_eq!((rec.message_id.as_str(), rec.at.as_str()), (message.message_id.as_str(), message.at.as_str()));
            }
        }
        if let Effect::Record { message_id, record, meta } = e {
            assert_eq!(Some(message_id.as_str()), decoded.event.message_id());
            // The exact decision made in the conversation object, on arbitrary known records.
            let known_types: Vec<RecordType> =
                RecordType::ALL.iter().enumerate().filter(|(i, _)| (u32::from(*records) >> i) & 1 != 0).map(|(_, t)| *t).collect();
            let known = Known {
                callback_url: (records & 0x80 != 0).then(|| "https://h.example/cb".to_string()),
                records: known_types.iter().map(|t| (*t, meta.clone())).collect::<Vec<(RecordType, RecordMeta)>>(),
            };
            if let Some(cb) = status_change_callback(message_id, *record, meta, &known) {
                assert!(known.callback_url.is_some());
                assert!(!known_types.contains(record));
                assert_ne!(project(known_types.iter().copied()), project(known_types.iter().copied().chain([*record])));
                assert!(cb.id.starts_with(message_id.as_str()));
            }
        }
    }
});
