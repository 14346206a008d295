//! The pipeline's decisions, as pure functions: what the webhook does with a verified event
//! ([`intake`]), and which effects applying it has ([`plan`]). The Workers shell
//! (`crate::pipeline`) reads what a plan needs, calls down here once, and executes the effects
//! in the order given.
//!
//! Jobs are the bodies of `EVENTS` queue messages and of dead letters. They are written as
//! JSON text with RBM's event embedded **verbatim** (not as an escaped string), so the size
//! checked here is the size of the queue message.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::conversation::{conversation_of, op_for_event, Op};
use super::event::Decoded;
use super::ids::is_valid_message_id;
use super::outbound::{forward_document, stable_event_id};
use super::route::{targets, ForwardKinds, Target};
use super::status::{fold, project, RecordMeta, RecordType, StatusView};

/// Largest queue message we send. Cloudflare Queues take 128 KB per message; the rest is left
/// for the platform's own envelope.
pub const MAX_QUEUE_MESSAGE_BYTES: usize = 120 * 1024;

/// How the webhook received an event (what the envelope said, and when).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// When the webhook received it (ms since the epoch).
    pub received_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_time: Option<String>,
    /// Google's `X-Goog-Webhook-Type` header, as sent (see [`webhook_type`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_type: Option<String>,
}

/// The `X-Goog-Webhook-Type` header worth keeping: 1 to 64 visible ASCII characters. Google
/// sends it with every webhook since July 2026; its values are not documented, so it is
/// recorded (job, forwarded document, log) and decides nothing.
pub fn webhook_type(header: Option<&str>) -> Option<String> {
    let v = header?.trim();
    let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_string())
}

/// A status change to POST to a message's `statusCallback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackJob {
    pub url: String,
    /// `webhook-id`: `{messageId}.{STATUS}`, the same for every retry of this change.
    pub id: String,
    pub message_id: String,
    /// The signed document, `{"type":"message.status", …the status view…}`.
    pub body: String,
}

/// A unit of asynchronous work, or a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A verified RBM event to apply: its JSON text (a validated object) and its receipt.
    Event { event: String, meta: Receipt },
    /// A status change to deliver to a callback URL.
    Callback(CallbackJob),
    /// A verified event whose data could not be decoded, kept verbatim (never replayed).
    Unparseable { data: Vec<u8>, why: String, meta: Receipt },
}

// The wire form: a flat struct, because `RawValue` cannot sit inside a tagged enum (serde
// buffers those, losing the raw text).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobWire<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(default)]
    meta: Option<serde_json::Value>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    why: Option<String>,
}

impl Receipt {
    /// Read by hand (a derived `Deserialize` costs the wasm more).
    fn from_value(v: &serde_json::Value) -> Option<Receipt> {
        let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(String::from);
        Some(Receipt {
            received_at: v.get("receivedAt")?.as_u64()?,
            pubsub_message_id: s("pubsubMessageId"),
            publish_time: s("publishTime"),
            webhook_type: s("webhookType"),
        })
    }
}

impl Job {
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Event { .. } => "event",
            Job::Callback(_) => "callback",
            Job::Unparseable { .. } => "unparseable",
        }
    }

    /// The job as JSON text (the queue message's exact bytes).
    pub fn to_json(&self) -> String {
        match self {
            // `event` is a validated JSON object (Decoded's invariant): spliced in as is.
            Job::Event { event, meta } => {
                let meta = serde_json::to_string(meta).unwrap_or_else(|_| "{}".into());
                format!(r#"{{"type":"event","meta":{meta},"event":{event}}}"#)
            }
            Job::Callback(cb) => {
                #[derive(Serialize)]
                struct Wire<'a> {
                    #[serde(rename = "type")]
                    kind: &'a str,
                    #[serde(flatten)]
                    cb: &'a CallbackJob,
                }
                serde_json::to_string(&Wire { kind: "callback", cb }).unwrap_or_default()
            }
            Job::Unparseable { data, why, meta } => {
                let mut v = serde_json::json!({"type": "unparseable", "why": why, "meta": meta});
                match std::str::from_utf8(data) {
                    Ok(text) => v["data"] = text.into(),
                    Err(_) => {
                        use base64::Engine as _;
                        v["dataBase64"] = base64::engine::general_purpose::STANDARD.encode(data).into();
                    }
                }
                v.to_string()
            }
        }
    }

    /// Reads a job written by [`Job::to_json`], or by earlier versions (which held the event
    /// as an escaped string).
    pub fn from_json(text: &str) -> Result<Job, String> {
        let w: JobWire = serde_json::from_str(text).map_err(|e| format!("not a job: {e}"))?;
        match w.kind {
            "event" => {
                let raw = w.event.ok_or("an event job without its event")?.get();
                let event = if raw.starts_with('"') {
                    serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?
                } else {
                    raw.to_string()
                };
                let meta = w
                    .meta
                    .as_ref()
                    .and_then(Receipt::from_value)
                    .ok_or("an event job without its receipt")?;
                Ok(Job::Event { event, meta })
            }
            "callback" => match (w.url, w.id, w.message_id, w.body) {
                (Some(url), Some(id), Some(message_id), Some(body)) => {
                    Ok(Job::Callback(CallbackJob { url, id, message_id, body }))
                }
                _ => Err("a callback job misses url, id, messageId or body".into()),
            },
            "unparseable" => {
                let data = match (w.data, w.data_base64) {
                    (Some(text), _) => text.into_bytes(),
                    (None, Some(b64)) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?
                    }
                    (None, None) => Vec::new(),
                };
                Ok(Job::Unparseable {
                    data,
                    why: w.why.unwrap_or_default(),
                    meta: w.meta.as_ref().and_then(Receipt::from_value).unwrap_or_default(),
                })
            }
            other => Err(format!("unknown job type \"{other}\"")),
        }
    }
}

/// The id a dead letter of undecodable data is kept under: the same for every redelivery of
/// the same bytes, so RBM's retries do not pile up copies.
pub fn unparseable_id(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("unparseable-{hex}")
}

/// How verified events are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the `EVENTS` queue (default).
    Queue,
    /// In the webhook request (deployments without Queues).
    Inline,
}

/// The settings the decisions depend on.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig<'a> {
    /// The kinds forwarded, `None` when no backend is configured.
    pub forward: Option<&'a ForwardKinds>,
    /// `RBM_AGENT_ID`: the conversation of an event that names no agent.
    pub default_agent: Option<&'a str>,
    pub mode: Mode,
}

/// What the webhook does with a verified, decoded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// Nothing to do but acknowledge (unknown kinds not forwarded, SUBSCRIBE not forwarded).
    Acknowledge,
    /// Only a live push (the user is typing): sent to the conversation after the response,
    /// never queued.
    Typing { agent: String, phone: String },
    /// Send this job text to the queue, then acknowledge.
    Enqueue(String),
    /// Apply in the request: inline mode, or too large for a queue message.
    ApplyInline,
}

pub fn intake(decoded: &Decoded, receipt: &Receipt, cfg: &PipelineConfig) -> Intake {
    if targets(&decoded.event, cfg.forward).is_empty() {
        // Decided without building the conversation op (no second parse of the event here).
        return match conversation_of(decoded, cfg.default_agent) {
            Some((agent, phone, true)) => Intake::Typing { agent: agent.into(), phone: phone.into() },
            Some(_) => work(decoded, receipt, cfg),
            None => Intake::Acknowledge,
        };
    }
    work(decoded, receipt, cfg)
}

fn work(decoded: &Decoded, receipt: &Receipt, cfg: &PipelineConfig) -> Intake {
    if cfg.mode == Mode::Inline {
        return Intake::ApplyInline;
    }
    let job = Job::Event { event: decoded.raw.clone(), meta: receipt.clone() }.to_json();
    if job.len() > MAX_QUEUE_MESSAGE_BYTES {
        Intake::ApplyInline
    } else {
        Intake::Enqueue(job)
    }
}

/// What is already known about a message (its callback and records), for
/// [`status_change_callback`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    pub callback_url: Option<String>,
    pub records: Vec<(RecordType, RecordMeta)>,
}

/// An effect of applying an event, in the order the shell must carry them out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Record `record` for `message_id` in KV (the value is the event's JSON).
    Record { message_id: String, record: RecordType, meta: RecordMeta },
    /// Hand the event to its conversation's object, which decides status changes exactly,
    /// owes the callback and pushes live frames.
    Conversation { agent: String, phone: String, op: Op },
    /// POST the forward document to `FORWARD_URL`.
    Forward { id: String, body: String },
    /// Nothing can be done for this reason; retrying will not help (logged, acknowledged).
    Skip { why: &'static str },
}

/// The effects of applying `decoded`.
pub fn plan(decoded: &Decoded, receipt: &Receipt, cfg: &PipelineConfig) -> Vec<Effect> {
    let mut out = Vec::with_capacity(3);
    let mut forward = None;
    for target in targets(&decoded.event, cfg.forward) {
        match target {
            Target::RecordStatus(t) => {
                let event = &decoded.event;
                match event.message_id().filter(|id| is_valid_message_id(id)) {
                    Some(message_id) => out.push(Effect::Record {
                        message_id: message_id.to_string(),
                        record: t,
                        meta: RecordMeta::from_event(event, receipt.received_at),
                    }),
                    None => out.push(Effect::Skip { why: "missing or invalid messageId" }),
                }
            }
            Target::Forward => {
                let id = stable_event_id(decoded, receipt.pubsub_message_id.as_deref());
                let body =
                    forward_document(decoded, &id, receipt.received_at, receipt.webhook_type.as_deref());
                forward = Some(Effect::Forward { id, body });
            }
        }
    }
    if let Some((agent, phone, op)) = op_for_event(decoded, receipt.received_at, cfg.default_agent) {
        out.push(Effect::Conversation { agent, phone, op });
    }
    out.extend(forward);
    out
}

/// The callback owed if recording `t` changes the message's status, else `None`.
pub fn status_change_callback(
    message_id: &str,
    t: RecordType,
    meta: &RecordMeta,
    known: &Known,
) -> Option<CallbackJob> {
    let url = known.callback_url.as_ref()?;
    let before = project(known.records.iter().map(|(r, _)| *r));
    if known.records.iter().any(|(r, _)| *r == t)
        || project(known.records.iter().map(|(r, _)| *r).chain([t])) == before
    {
        return None; // a duplicate, or an event that does not change the status
    }
    let mut records = known.records.clone();
    records.push((t, meta.clone()));
    let view = fold(message_id, records)?;
    Some(CallbackJob {
        url: url.clone(),
        id: format!("{message_id}.{}", view.status.as_str()),
        message_id: message_id.to_string(),
        body: callback_document(&view),
    })
}

/// `{"type":"message.status", …the status view…}`: the `type` keeps a receiver from ever
/// taking a callback for a forwarded event (`"type":"event"`), even when both are signed with
/// the same key.
pub fn callback_document(view: &StatusView) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        view: &'a StatusView,
    }
    serde_json::to_string(&Doc { kind: "message.status", view }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::status::Source;

    fn decode(s: &str) -> Decoded {
        Decoded::from_bytes(s.as_bytes().to_vec()).expect("decodes")
    }

    #[test]
    fn webhook_type_header_is_kept_when_sane() {
        assert_eq!(webhook_type(Some(" USER_EVENT ")), Some("USER_EVENT".into()));
        assert_eq!(webhook_type(Some("")), None);
        assert_eq!(webhook_type(Some("a b")), None);
        assert_eq!(webhook_type(Some(&"x".repeat(65))), None);
        assert_eq!(webhook_type(None), None);
    }

    fn receipt() -> Receipt {
        Receipt {
            received_at: 1_767_225_600_000,
            pubsub_message_id: Some("p1".into()),
            publish_time: None,
            webhook_type: Some("USER_EVENT".into()),
        }
    }

    fn cfg(forward: Option<&ForwardKinds>, mode: Mode) -> PipelineConfig<'_> {
        PipelineConfig { forward, default_agent: Some("default_agent"), mode }
    }

    fn sent() -> (RecordType, RecordMeta) {
        let m = RecordMeta {
            at: "2026-01-01T00:00:00.000Z".into(),
            received_at: "2026-01-01T00:00:00.000Z".into(),
            source: Source::Api,
            event_id: None,
            phone_number: Some("+12223334444".into()),
            agent_id: Some("a".into()),
            http_status: None,
            fallback: None,
        };
        (RecordType::Sent, m)
    }

    const DELIVERED: &str = r#"{"senderPhoneNumber":"+12223334444","messageId":"m1","eventId":"e1","eventType":"DELIVERED","sendTime":"2026-01-01T00:00:01Z"}"#;

    #[test]
    fn jobs_embed_the_event_verbatim_and_round_trip() {
        let raw = r#"{"text":"\"quoted\" \u00e9","senderPhoneNumber":"+12223334444","messageId":"u"}"#;
        let job = Job::Event { event: raw.into(), meta: receipt() };
        let json = job.to_json();
        assert!(json.ends_with(&format!(r#""event":{raw}}}"#)), "{json}");
        assert_eq!(Job::from_json(&json), Ok(job));
        // the former layout: the event as an escaped string
        let old = format!(
            r#"{{"type":"event","event":{},"meta":{{"receivedAt":5}}}}"#,
            serde_json::to_string(raw).unwrap()
        );
        assert!(matches!(Job::from_json(&old), Ok(Job::Event { event, .. }) if event == raw));
        let cb = Job::Callback(CallbackJob {
            url: "https://h/x".into(),
            id: "m.READ".into(),
            message_id: "m".into(),
            body: "{}".into(),
        });
        assert_eq!(Job::from_json(&cb.to_json()), Ok(cb));
        for bytes in [b"not json".to_vec(), vec![0xff, 0xfe, b'{']] {
            let u = Job::Unparseable { data: bytes, why: "w".into(), meta: receipt() };
            assert_eq!(Job::from_json(&u.to_json()), Ok(u));
        }
        assert!(Job::from_json("{}").is_err());
        assert!(Job::from_json(r#"{"type":"mystery"}"#).is_err());
        assert!(Job::from_json(r#"{"type":"event"}"#).is_err());
    }

    #[test]
    fn intake_sizes_the_exact_message() {
        let fk = ForwardKinds::default();
        // 45 000 quotes: ~90 KB of JSON; escaped twice it was > 128 KB, verbatim it fits
        let text = "\\\"".repeat(45_000);
        let big =
            decode(&format!(r#"{{"senderPhoneNumber":"+12223334444","messageId":"u","text":"{text}"}}"#));
        match intake(&big, &receipt(), &cfg(Some(&fk), Mode::Queue)) {
            Intake::Enqueue(job) => {
                assert!(job.len() <= MAX_QUEUE_MESSAGE_BYTES);
                assert!(job.len() < big.raw.len() + 200);
            }
            other => panic!("{other:?}"),
        }
        let text = "x".repeat(MAX_QUEUE_MESSAGE_BYTES);
        let huge = decode(&format!(r#"{{"senderPhoneNumber":"+1","messageId":"u","text":"{text}"}}"#));
        assert_eq!(intake(&huge, &receipt(), &cfg(Some(&fk), Mode::Queue)), Intake::ApplyInline);
        let small = decode(DELIVERED);
        assert_eq!(intake(&small, &receipt(), &cfg(Some(&fk), Mode::Inline)), Intake::ApplyInline);
        // typing: a live push only, never queued
        let typing = decode(r#"{"senderPhoneNumber":"+12223334444","eventType":"IS_TYPING"}"#);
        assert!(matches!(
            intake(&typing, &receipt(), &cfg(Some(&fk), Mode::Queue)),
            Intake::Typing { ref agent, .. } if agent == "default_agent"
        ));
        // nothing to do: acknowledged without a queue write
        let unknown = decode(r#"{"whatever":1}"#);
        assert_eq!(intake(&unknown, &receipt(), &cfg(Some(&fk), Mode::Queue)), Intake::Acknowledge);
        let subscribe = decode(r#"{"senderPhoneNumber":"+12223334444","eventType":"SUBSCRIBE"}"#);
        assert_eq!(intake(&subscribe, &receipt(), &cfg(None, Mode::Queue)), Intake::Acknowledge);
        // a receipt is always recorded, even without a backend
        assert!(matches!(intake(&small, &receipt(), &cfg(None, Mode::Queue)), Intake::Enqueue(_)));
    }

    #[test]
    fn a_receipt_is_recorded_then_handed_to_its_conversation_then_forwarded() {
        let fk = ForwardKinds::default();
        let effects = plan(&decode(DELIVERED), &receipt(), &cfg(Some(&fk), Mode::Queue));
        assert!(
            matches!(&effects[0], Effect::Record { record: RecordType::Delivered, message_id, .. } if message_id == "m1")
        );
        assert!(
            matches!(&effects[1], Effect::Conversation { agent, phone, op: Op::Status { .. } } if agent == "default_agent" && phone == "+12223334444")
        );
        assert!(matches!(&effects[2], Effect::Forward { .. }));
        assert_eq!(effects.len(), 3);
    }

    #[test]
    fn a_status_change_owes_one_callback_on_the_exact_records() {
        let d = decode(DELIVERED);
        let meta = RecordMeta::from_event(&d.event, 0);
        let known = Known { callback_url: Some("https://h.example/cb".into()), records: vec![sent()] };
        let cb = status_change_callback("m1", RecordType::Delivered, &meta, &known).expect("owed");
        assert_eq!(cb.id, "m1.DELIVERED");
        let doc: serde_json::Value = serde_json::from_str(&cb.body).expect("json");
        assert_eq!(doc["type"], "message.status");
        assert_eq!(doc["status"], "DELIVERED");
        let url = Some("https://h.example/cb".to_string());
        let (_, m) = sent();
        // already delivered: a duplicate; already READ: DELIVERED changes nothing; no URL
        let dup =
            Known { callback_url: url.clone(), records: vec![sent(), (RecordType::Delivered, m.clone())] };
        assert_eq!(status_change_callback("m1", RecordType::Delivered, &meta, &dup), None);
        let read = Known { callback_url: url, records: vec![sent(), (RecordType::Read, m)] };
        assert_eq!(status_change_callback("m1", RecordType::Delivered, &meta, &read), None);
        let none = Known { callback_url: None, records: vec![sent()] };
        assert_eq!(status_change_callback("m1", RecordType::Delivered, &meta, &none), None);
    }

    #[test]
    fn forwards_carry_their_type_and_receipts_without_ids_are_skipped() {
        let fk = ForwardKinds::default();
        let text = decode(r#"{"senderPhoneNumber":"+12223334444","messageId":"u1","text":"hi"}"#);
        let effects = plan(&text, &receipt(), &cfg(Some(&fk), Mode::Queue));
        let [Effect::Conversation { op: Op::Inbound { .. }, .. }, Effect::Forward { id, body }] =
            effects.as_slice()
        else {
            panic!("{effects:?}")
        };
        assert_eq!(id, "rbm_msg_u1");
        assert!(body.starts_with(r#"{"type":"event","#), "{body}");
        let no_id = decode(r#"{"senderPhoneNumber":"+1","eventType":"READ"}"#);
        let effects = plan(&no_id, &receipt(), &cfg(None, Mode::Queue));
        assert_eq!(effects, vec![Effect::Skip { why: "missing or invalid messageId" }]);
    }

    #[test]
    fn unparseable_ids_are_stable() {
        assert_eq!(unparseable_id(b"x"), unparseable_id(b"x"));
        assert_ne!(unparseable_id(b"x"), unparseable_id(b"y"));
        assert!(is_valid_message_id(&unparseable_id(b"x")));
    }
}
