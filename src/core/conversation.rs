//! A conversation: what passes between one agent and one phone number, as the `Conversation`
//! Durable Object keeps it. Pure parts only: the operations the Worker sends to the object,
//! the history items and live frames it answers with, and the history cursor. The decision of
//! whether a receipt changes a status (and so owes a callback) is
//! [`super::pipeline::status_change_callback`], made here on the object's exact records.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::event::{Decoded, RbmEvent, UserContent, UserEventType};
use super::ids::is_valid_message_id;
use super::status::{RecordMeta, RecordType};
use super::time::{format_rfc3339_millis, parse_rfc3339_millis, parse_rfc3339_nanos};

/// Messages a history page holds at most.
pub const MAX_PAGE: usize = 100;
/// Messages sent with the `ready` frame.
pub const READY_MESSAGES: usize = 20;

/// The object's name for `(agent, phone)`: one object per conversation, worldwide.
pub fn object_name(agent_id: &str, phone: &str) -> String {
    format!("c:{agent_id}:{phone}")
}

/// The object's name for a browser token's send budget.
pub fn budget_name(jti: &str) -> String {
    format!("b:{jti}")
}

/// What the Worker asks of a conversation (the JSON argument of its RPC method `op`). Externally
/// tagged (`{"outbound":{…}}`): an internally tagged enum makes serde buffer the whole body
/// first, which costs the wasm tens of kilobytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// An agent message through the relay: registered before RBM is called when it has a
    /// callback (a receipt can overtake RBM's answer), then recorded with RBM's answer.
    #[serde(rename_all = "camelCase")]
    Outbound {
        message_id: String,
        /// The AgentMessage as relayed (dropped by the object when history is off).
        content: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callback_url: Option<String>,
        /// SENT or SEND_FAILED; `None` before the relay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<RecordType>,
        meta: RecordMeta,
        /// SMS fallback asked for with the send.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<FallbackOrder>,
    },
    /// A receipt, TTL notice or relay revoke about an agent message.
    #[serde(rename_all = "camelCase")]
    Status { message_id: String, record: RecordType, meta: RecordMeta },
    /// A user message.
    #[serde(rename_all = "camelCase")]
    Inbound { message: InboundMessage },
    /// The user is typing.
    Typing,
    /// Take `units` sends from a browser token's `maxSends` (budget objects only): all or none.
    #[serde(rename_all = "camelCase")]
    TakeSend { max: u32, units: u32, expires_at_ms: u64 },
}

/// A send's SMS fallback, as the conversation object keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FallbackOrder {
    /// The deadline (ms since the epoch); `None` when the TTL revocation is the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    pub sms_text: String,
}

/// A user message as history and live frames show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundMessage {
    pub message_id: String,
    /// `text`, `suggestionResponse`, `location` or `userFile`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion_response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_file: Option<Value>,
    /// RBM's `sendTime`, else when it was received.
    pub at: String,
}

impl Op {
    /// Reads an op written by its `Serialize` (the Worker's side). By hand rather than derived:
    /// serde's derive for an enum of struct variants costs the wasm some 20 KB.
    pub fn from_json(text: &str) -> Result<Op, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let (name, body) = match &v {
            Value::String(s) => (s.as_str(), &Value::Null),
            Value::Object(m) if m.len() == 1 => {
                m.iter().next().map(|(k, b)| (k.as_str(), b)).ok_or("empty op")?
            }
            _ => return Err("an op is a string or a one-key object".into()),
        };
        let str_of = |k: &str| body.get(k).and_then(Value::as_str).map(String::from);
        let need = |k: &str| str_of(k).ok_or_else(|| format!("{name} needs {k}"));
        let num = |k: &str| body.get(k).and_then(Value::as_u64).ok_or_else(|| format!("{name} needs {k}"));
        let record = |k: &str| str_of(k).and_then(|r| RecordType::parse(&r));
        let meta =
            || body.get("meta").and_then(RecordMeta::from_value).ok_or_else(|| format!("{name} needs meta"));
        Ok(match name {
            "outbound" => Op::Outbound {
                message_id: need("messageId")?,
                content: body.get("content").cloned().unwrap_or(Value::Null),
                callback_url: str_of("callbackUrl"),
                record: record("record"),
                meta: meta()?,
                fallback: match body.get("fallback") {
                    Some(f @ Value::Object(_)) => Some(FallbackOrder {
                        deadline_ms: f.get("deadlineMs").and_then(Value::as_u64),
                        sms_text: f
                            .get("smsText")
                            .and_then(Value::as_str)
                            .ok_or("fallback needs smsText")?
                            .to_string(),
                    }),
                    _ => None,
                },
            },
            "status" => Op::Status {
                message_id: need("messageId")?,
                record: record("record").ok_or("status needs record")?,
                meta: meta()?,
            },
            "inbound" => {
                let m = body.get("message").ok_or("inbound needs message")?;
                let s = |k: &str| m.get(k).and_then(Value::as_str).map(String::from);
                let obj = |k: &str| m.get(k).filter(|v| v.is_object()).cloned();
                Op::Inbound {
                    message: InboundMessage {
                        message_id: s("messageId").ok_or("inbound needs messageId")?,
                        kind: s("kind").unwrap_or_default(),
                        text: s("text"),
                        suggestion_response: obj("suggestionResponse"),
                        location: obj("location"),
                        user_file: obj("userFile"),
                        at: s("at").unwrap_or_default(),
                    },
                }
            }
            "typing" => Op::Typing,
            "takeSend" => Op::TakeSend {
                max: u32::try_from(num("max")?).map_err(|_| "max out of range")?,
                units: u32::try_from(num("units")?).map_err(|_| "units out of range")?,
                expires_at_ms: num("expiresAtMs")?,
            },
            other => return Err(format!("unknown op {other}")),
        })
    }
}

/// A user message as the object records it, read from an `inbound` op's text without a tree
/// of its content: its id and time, and its view (the message with `"direction":"inbound"`),
/// kept in history and pushed to pages as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub message_id: String,
    pub at: String,
    pub view: String,
}

impl InboundRecord {
    /// `Some` for an `inbound` op as the Worker writes it: `{"inbound":{"message":M}}`, where M
    /// (an [`InboundMessage`]) starts with `messageId` and ends with `at`. `None` for any other
    /// text, which [`Op::from_json`] reads (and explains). By hand: a derived reader for the
    /// two fields costs the wasm more than this.
    pub fn from_op(text: &str) -> Option<InboundRecord> {
        let message = text.strip_prefix(r#"{"inbound":{"message":"#)?.strip_suffix("}}")?;
        // One JSON value, nothing after it; it starts with `{`, so it is an object.
        serde_json::from_str::<serde::de::IgnoredAny>(message).ok()?;
        let members = message.strip_prefix('{')?;
        let (message_id, _) = json_string_at(members.strip_prefix(r#""messageId":"#)?)?;
        // Quotes inside strings are escaped, so the last `,"at":` outside any string is the
        // message's own last member unless a nested object ends the message (then no match).
        let at_key = members.rfind(r#","at":"#)?;
        let (at, rest) = json_string_at(&members[at_key + 6..])?;
        if rest != "}" {
            return None;
        }
        Some(InboundRecord { message_id, at, view: inbound_view(members) })
    }
}

/// The record of a message read by [`Op::from_json`] (an op in another shape than the Worker's).
impl From<InboundMessage> for InboundRecord {
    fn from(m: InboundMessage) -> InboundRecord {
        let json = serde_json::to_string(&m).unwrap_or_default();
        let view = inbound_view(json.strip_prefix('{').unwrap_or("}"));
        InboundRecord { message_id: m.message_id, at: m.at, view }
    }
}

/// The view of a user message from its object's members (its text after the `{`).
fn inbound_view(members: &str) -> String {
    if members.trim_start().starts_with('}') {
        return r#"{"direction":"inbound"}"#.into();
    }
    format!(r#"{{"direction":"inbound",{members}"#)
}

/// The JSON string literal at the start of `s`, decoded, and what follows it.
fn json_string_at(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((serde_json::from_str(&s[..=i]).ok()?, &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// The conversation a verified event belongs to, `(agent, phone, is_typing)`, if any: receipts
/// and TTL notices for agent messages, user messages and typing; other kinds (SUBSCRIBE,
/// unknown) are not part of the conversation. Cheap: the webhook asks it of every event, and
/// only [`op_for_event`] builds the op.
pub fn conversation_of<'a>(
    decoded: &'a Decoded,
    default_agent: Option<&'a str>,
) -> Option<(&'a str, &'a str, bool)> {
    let e = &decoded.event;
    let phone = e.phone_number()?;
    let agent = e.agent_id().or(default_agent)?;
    let typing = matches!(e, RbmEvent::UserEvent(u) if u.event_type == UserEventType::IsTyping);
    let kept = typing
        || matches!(e, RbmEvent::UserMessage(_))
        || (super::route::status_record(e).is_some() && e.message_id().is_some_and(is_valid_message_id));
    kept.then_some((agent, phone, typing))
}

/// Where a verified event goes in its conversation, if anywhere: `(agent, phone, op)`.
pub fn op_for_event(
    decoded: &Decoded,
    received_at_ms: u64,
    default_agent: Option<&str>,
) -> Option<(String, String, Op)> {
    let (agent, phone, _) = conversation_of(decoded, default_agent)?;
    let (agent, phone) = (agent.to_string(), phone.to_string());
    let e = &decoded.event;
    let received_at = &format_rfc3339_millis(received_at_ms);
    let op = match e {
        RbmEvent::UserEvent(u) if u.event_type == UserEventType::IsTyping => Op::Typing,
        RbmEvent::UserMessage(m) => {
            // The content's object (objects only, as `Op::from_json` reads them back: a string
            // `userFile` is nothing to show), under its own kind's key.
            let object =
                |kind: fn(&UserContent) -> bool| m.content_object.clone().filter(|_| kind(&m.content));
            let kind = e.kind().to_string();
            Op::Inbound {
                message: InboundMessage {
                    message_id: m.message_id.clone().unwrap_or_else(|| format!("anon-{received_at_ms}")),
                    text: match &m.content {
                        UserContent::Text(t) => Some(t.clone()),
                        _ => None,
                    },
                    suggestion_response: object(|c| matches!(c, UserContent::SuggestionResponse(_))),
                    location: object(|c| matches!(c, UserContent::Location(_))),
                    user_file: object(|c| matches!(c, UserContent::UserFile(_))),
                    at: m
                        .send_time
                        .clone()
                        .filter(|t| parse_rfc3339_nanos(t).is_some())
                        .unwrap_or_else(|| received_at.to_string()),
                    kind,
                },
            }
        }
        _ => {
            let record = super::route::status_record(e)?;
            let message_id = e.message_id().filter(|id| is_valid_message_id(id))?.to_string();
            Op::Status { message_id, record, meta: RecordMeta::from_event(e, received_at_ms) }
        }
    };
    Some((agent, phone, op))
}

/// Milliseconds since the epoch of an RFC 3339 time (0 when unreadable): the history order.
pub fn order_ms(at: &str) -> i64 {
    parse_rfc3339_millis(at).unwrap_or(0)
}

/// A history cursor: the position of the last message of a page (`at_ms`, message id).
pub fn encode_cursor(at_ms: i64, message_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at_ms}:{message_id}"))
}

pub fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once(':')?;
    Some((at.parse().ok()?, id.to_string()))
}

/// A message's records as the object reads them in one text: `type` US `meta` per record,
/// records joined by RS (control characters JSON text never holds unescaped). Unreadable
/// parts are skipped, as unreadable rows were.
pub fn split_records(joined: Option<&str>) -> Vec<(RecordType, RecordMeta)> {
    let Some(joined) = joined else { return Vec::new() };
    joined
        .split('\u{1e}')
        .filter_map(|r| {
            let (t, meta) = r.split_once('\u{1f}')?;
            Some((RecordType::parse(t)?, RecordMeta::from_json(meta)?))
        })
        .collect()
}

/// A live frame for the conversation's sockets.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Frame<'a> {
    #[serde(rename = "ready")]
    Ready { messages: &'a [Value] },
    #[serde(rename = "message.status", rename_all = "camelCase")]
    Status { message_id: &'a str, status: &'a str, event: &'a str },
    #[serde(rename = "typing")]
    Typing { active: bool },
}

impl Frame<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `message.received` frame around a user message's view (JSON text, as kept).
    pub fn received(view: &str) -> String {
        format!(r#"{{"type":"message.received","message":{view}}}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Decoded {
        Decoded::from_bytes(s.as_bytes().to_vec()).expect("decodes")
    }
    const AT: &str = "2026-01-01T00:00:00.000Z";
    const AT_MS: u64 = 1_767_225_600_000;

    #[test]
    fn content_that_is_not_an_object_is_not_kept_and_the_op_round_trips() {
        let d =
            decode(r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"u1","userFile":"x"}"#);
        let (_, _, op) = op_for_event(&d, AT_MS, None).expect("a user message");
        let Op::Inbound { message } = &op else { panic!("{op:?}") };
        assert_eq!(message.user_file, None);
        let json = serde_json::to_string(&op).expect("serializes");
        assert_eq!(Op::from_json(&json), Ok(op));
    }

    #[test]
    fn events_map_to_their_conversation() {
        let text = decode(
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"u1","sendTime":"2026-01-01T00:00:01Z","text":"hi"}"#,
        );
        let (agent, phone, op) = op_for_event(&text, AT_MS, None).expect("inbound");
        assert_eq!((agent.as_str(), phone.as_str()), ("a", "+12223334444"));
        let Op::Inbound { message } = op else { panic!() };
        assert_eq!(
            (message.kind.as_str(), message.text.as_deref(), message.at.as_str()),
            ("text", Some("hi"), "2026-01-01T00:00:01Z")
        );
        let tap = decode(
            r#"{"senderPhoneNumber":"+12223334444","messageId":"u2","suggestionResponse":{"postbackData":"yes","text":"Yes","type":"REPLY"}}"#,
        );
        let (agent, _, op) = op_for_event(&tap, AT_MS, Some("default")).expect("inbound");
        assert_eq!(agent, "default");
        let Op::Inbound { message } = op else { panic!() };
        assert_eq!(message.suggestion_response.expect("kept")["postbackData"], "yes");
        assert_eq!(message.at, AT);
        let read = decode(
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"m1","eventType":"READ","sendTime":"2026-01-01T00:00:02Z"}"#,
        );
        assert!(matches!(
            op_for_event(&read, AT_MS, None),
            Some((_, _, Op::Status { record: RecordType::Read, .. }))
        ));
        let typing = decode(r#"{"agentId":"a","senderPhoneNumber":"+12223334444","eventType":"IS_TYPING"}"#);
        assert!(matches!(op_for_event(&typing, AT_MS, None), Some((_, _, Op::Typing))));
        for none in [
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","eventType":"SUBSCRIBE"}"#,
            r#"{"agentId":"a","whatever":1}"#,
            r#"{"senderPhoneNumber":"+12223334444","text":"no agent anywhere"}"#,
        ] {
            assert_eq!(op_for_event(&decode(none), AT_MS, None), None, "{none}");
            assert_eq!(conversation_of(&decode(none), None), None, "{none}");
        }
    }

    #[test]
    fn ops_round_trip_through_json() {
        let meta = RecordMeta::from_event(
            &decode(r#"{"senderPhoneNumber":"+1222","messageId":"m","eventType":"READ"}"#).event,
            AT_MS,
        );
        let text = decode(
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"u1","location":{"latitude":1.5,"longitude":2}}"#,
        );
        let Some((_, _, inbound)) = op_for_event(&text, AT_MS, None) else { panic!() };
        for op in [
            Op::Outbound {
                message_id: "m".into(),
                content: serde_json::json!({"contentMessage": {"text": "hi"}}),
                callback_url: Some("https://h.example/cb".into()),
                record: Some(RecordType::Sent),
                meta: meta.clone(),
                fallback: Some(FallbackOrder { deadline_ms: Some(5), sms_text: "sms".into() }),
            },
            Op::Outbound {
                message_id: "m".into(),
                content: Value::Null,
                callback_url: None,
                record: None,
                meta: meta.clone(),
                fallback: None,
            },
            Op::Status { message_id: "m".into(), record: RecordType::Read, meta },
            inbound,
            Op::Typing,
            Op::TakeSend { max: 5, units: 2, expires_at_ms: 9 },
        ] {
            assert_eq!(Op::from_json(&serde_json::to_string(&op).expect("json")), Ok(op.clone()), "{op:?}");
        }
        for bad in [
            "",
            "[]",
            r#"{"a":1,"b":2}"#,
            r#"{"status":{}}"#,
            r#"{"mystery":{}}"#,
            r#"{"takeSend":{"max":-1,"units":1,"expiresAtMs":1}}"#,
        ] {
            assert!(Op::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let c = encode_cursor(1_767_225_600_000, "m:1");
        assert_eq!(decode_cursor(&c), Some((1_767_225_600_000, "m:1".into())));
        for bad in ["", "!!", &URL_SAFE_NO_PAD.encode("nocolon"), &URL_SAFE_NO_PAD.encode("x:1")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_are_split_from_one_text() {
        let meta = RecordMeta::from_json(r#"{"at":"2026-01-01T00:00:01Z","receivedAt":"2026-01-01T00:00:02Z","source":"webhook","eventId":"e\u001f\u001e"}"#)
            .expect("meta");
        let json = serde_json::to_string(&meta).unwrap();
        assert!(!json.contains(['\u{1e}', '\u{1f}']), "{json}");
        let joined = format!("DELIVERED\u{1f}{json}\u{1e}READ\u{1f}{json}\u{1e}MYSTERY\u{1f}{json}\u{1e}READ\u{1f}not json\u{1e}junk");
        assert_eq!(
            split_records(Some(&joined)),
            vec![(RecordType::Delivered, meta.clone()), (RecordType::Read, meta)]
        );
        assert_eq!(split_records(None), vec![]);
        assert_eq!(split_records(Some("")), vec![]);
    }

    #[test]
    fn an_inbound_op_is_recorded_from_its_text() {
        for event in [
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"u1","sendTime":"2026-01-01T00:00:01Z","text":"h\"i\u00e9"}"#,
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"u2","suggestionResponse":{"postbackData":"p","text":"Yes"}}"#,
            r#"{"agentId":"a","senderPhoneNumber":"+12223334444","messageId":"u3","location":{"latitude":1.5,"longitude":-2}}"#,
        ] {
            let (_, _, op) = op_for_event(&decode(event), AT_MS, None).expect("inbound");
            let Op::Inbound { message } = &op else { panic!("{op:?}") };
            let rec = InboundRecord::from_op(&serde_json::to_string(&op).unwrap()).expect("recorded");
            assert_eq!(
                (rec.message_id.as_str(), rec.at.as_str()),
                (message.message_id.as_str(), message.at.as_str())
            );
            let mut expected = serde_json::to_value(message).unwrap();
            expected["direction"] = "inbound".into();
            assert_eq!(serde_json::from_str::<Value>(&rec.view).unwrap(), expected, "{}", rec.view);
            assert_eq!(InboundRecord::from(message.clone()), rec, "the same record either way");
        }
        for other in [
            r#"{"inbound":{"message":{"messageId":"m","at":"t"}}}"#,
            r#"{"inbound":{"message":{"messageId":"m"}}}"#,
            r#"{"inbound":{"message":{"messageId":"m","text":"x\",\"at\":\"y"}}}"#,
            r#"{"inbound":{"message":{"messageId":"m","at":"t","location":{"at":"u"}}}}"#,
            r#"{"inbound":{"message":{"messageId":"m\"","at":"t\\"}}}"#,
            r#"{"inbound":{"message":{"messageId":"m","at":"t"}},"x":{"y":1}}}"#,
            r#"{"inbound":{"message":{"at":"t"}}}"#,
            r#"{"inbound":{"message":[1,2]}}"#,
            r#"{"inbound":{"message":["m","t"]}}"#,
            r#"{"inbound":{"message":{"messageId":"m"}} , {"x":1}}}"#,
            r#"{"inbound":{"message":{"messageId":"m"}}} "#,
            r#""typing""#,
            r#"{"status":{}}"#,
        ] {
            let rec = InboundRecord::from_op(other);
            match other {
                r#"{"inbound":{"message":{"messageId":"m","at":"t"}}}"# => assert_eq!(
                    rec,
                    Some(InboundRecord {
                        message_id: "m".into(),
                        at: "t".into(),
                        view: r#"{"direction":"inbound","messageId":"m","at":"t"}"#.into()
                    })
                ),
                r#"{"inbound":{"message":{"messageId":"m\"","at":"t\\"}}}"# => {
                    assert_eq!(rec.map(|r| (r.message_id, r.at)), Some(("m\"".into(), "t\\".into())))
                }
                _ => assert_eq!(rec, None, "{other}"),
            }
        }
    }

    #[test]
    fn frames_have_the_documented_shapes() {
        let s = Frame::Status { message_id: "m", status: "READ", event: "READ" }.to_json();
        assert_eq!(s, r#"{"type":"message.status","messageId":"m","status":"READ","event":"READ"}"#);
        assert_eq!(Frame::Typing { active: true }.to_json(), r#"{"type":"typing","active":true}"#);
        assert_eq!(
            Frame::received(r#"{"direction":"inbound"}"#),
            r#"{"type":"message.received","message":{"direction":"inbound"}}"#
        );
        assert_eq!(Frame::Ready { messages: &[] }.to_json(), r#"{"type":"ready","messages":[]}"#);
        let op = Op::TakeSend { max: 5, units: 1, expires_at_ms: 9 };
        assert_eq!(Op::from_json(&serde_json::to_string(&op).unwrap()), Ok(op));
    }
}
