//! The pipeline planner (`core::pipeline`) on arbitrary events, known records and modes.
//!
//! Input: byte 0 picks the mode and settings, byte 1 the known records (a bit per record
//! type) and whether a callback URL is known; the rest is the event's bytes.
//!
//! Invariants: no panic; an enqueued job fits a queue message, reads back as the same event
//! and embeds it verbatim; a callback is owed only with a known URL and only when the status
//! changes, enqueued before the record (queue) or deferred after it (inline); at most one
//! record and one forward per event; `Job::from_json` is total on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbm_edge::core::event::Decoded;
use rbm_edge::core::pipeline::{
    intake, needs, plan, Effect, Intake, Job, Known, Mode, PipelineConfig, Receipt, MAX_QUEUE_MESSAGE_BYTES,
};
use rbm_edge::core::route::ForwardKinds;
use rbm_edge::core::status::{project, RecordMeta, RecordType, Source};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Job::from_json(text);
    }
    let [settings, records, rest @ ..] = data else { return };
    let Ok(decoded) = Decoded::from_bytes(rest.to_vec()) else { return };
    let kinds = if settings & 4 != 0 { ForwardKinds::parse("*") } else { ForwardKinds::default() };
    let cfg = PipelineConfig {
        forward: (settings & 2 != 0).then_some(&kinds),
        callbacks: settings & 8 != 0,
        mode: if settings & 1 != 0 { Mode::Inline } else { Mode::Queue },
    };
    let receipt = Receipt { received_at: 1_767_225_600_000, pubsub_message_id: None, publish_time: None };

    match intake(&decoded, &receipt, &cfg) {
        Intake::Enqueue(job) => {
            assert_eq!(cfg.mode, Mode::Queue);
            assert!(job.len() <= MAX_QUEUE_MESSAGE_BYTES);
            match Job::from_json(&job) {
                Ok(Job::Event { event, meta }) => {
                    assert_eq!(event, decoded.raw);
                    assert_eq!(meta, receipt);
                }
                other => panic!("enqueued job does not read back: {other:?}"),
            }
        }
        Intake::Acknowledge => assert!(plan(&decoded, &receipt, &cfg, None).is_empty()),
        Intake::ApplyInline => {}
    }

    let meta = RecordMeta {
        at: "2026-01-01T00:00:00Z".into(),
        received_at: "2026-01-01T00:00:00.000Z".into(),
        source: Source::Webhook,
        event_id: None,
        phone_number: None,
        agent_id: None,
        http_status: None,
    };
    let known_types: Vec<RecordType> =
        RecordType::ALL.iter().enumerate().filter(|(i, _)| records & (1 << i) != 0).map(|(_, t)| *t).collect();
    let known = Known {
        callback_url: (records & 0x80 != 0).then(|| "https://h.example/cb".to_string()),
        records: known_types.iter().map(|t| (*t, meta.clone())).collect(),
    };
    let needed = needs(&decoded, &cfg);
    let effects = plan(&decoded, &receipt, &cfg, needed.map(|_| &known));
    let (mut record_at, mut callback_at, mut forwards) = (None, None, 0);
    for (i, e) in effects.iter().enumerate() {
        match e {
            Effect::Record { record, message_id, .. } => {
                assert!(record_at.replace((i, *record)).is_none(), "one record");
                assert_eq!(Some(message_id.as_str()), decoded.event.message_id());
            }
            Effect::EnqueueCallback(_) | Effect::CallbackAfterResponse(_) => {
                assert!(callback_at.replace(i).is_none(), "one callback");
            }
            Effect::Forward { .. } => forwards += 1,
            Effect::Skip { .. } => {}
        }
    }
    assert!(forwards <= 1);
    if let Some(c) = callback_at {
        let (r, t) = record_at.expect("a callback comes with a record");
        assert!(needed.is_some() && known.callback_url.is_some());
        assert!(!known_types.contains(&t));
        assert_ne!(project(known_types.iter().copied()), project(known_types.iter().copied().chain([t])));
        match (&effects[c], cfg.mode) {
            (Effect::EnqueueCallback(_), Mode::Queue) => assert!(c < r),
            (Effect::CallbackAfterResponse(_), Mode::Inline) => assert!(c > r),
            other => panic!("callback in the wrong form for the mode: {other:?}"),
        }
    }
});
