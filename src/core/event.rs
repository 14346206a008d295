//! RBM's inbound events, typed: UserMessage, UserEvent and ServerEvent.
//!
//! RBM sends no type field, so the kind is told apart by keys (Google's reference):
//! - an `eventType` of `TTL_EXPIRATION_*`, or an `eventType` with `phoneNumber` and no
//!   `senderPhoneNumber`, is a **ServerEvent** (note: `phoneNumber`, not `senderPhoneNumber`);
//! - any other `eventType` is a **UserEvent** (DELIVERED, READ, IS_TYPING, SUBSCRIBE, …);
//! - `text`, `suggestionResponse`, `location` or `userFile` makes a **UserMessage**;
//! - anything else is `Unknown`: acknowledged and kept, never an error.
//!
//! The decoded JSON is kept verbatim next to the typed view (`Decoded::raw`), so fields we do
//! not model yet are never lost when an event is logged, queued or forwarded.

use serde::{Deserialize, Serialize};

/// One decoded event: the typed view and the exact JSON text RBM sent (known to be one valid
/// JSON object, so it can be embedded verbatim in documents we build).
#[derive(Debug)]
pub struct Decoded {
    pub event: RbmEvent,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RbmEvent {
    UserMessage(UserMessage),
    UserEvent(UserEvent),
    ServerEvent(ServerEvent),
    /// A partner event: the agent's launch state changed in a region (RBM reference,
    /// AgentLaunchEvent). No phone number; kept raw, forwarded as `agentLaunch`.
    AgentLaunch(AgentLaunch),
    /// A JSON object of no kind we know (a future RBM event): kept raw, acknowledged.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMessage {
    pub agent_id: Option<String>,
    pub sender_phone_number: Option<String>,
    pub message_id: Option<String>,
    pub send_time: Option<String>,
    pub content: UserContent,
    /// The content's JSON object as RBM sent it (suggestionResponse, location, userFile), for
    /// the conversation history: kept from the one parse, never parsed again.
    #[serde(skip)]
    pub content_object: Option<serde_json::Value>,
}

/// Exactly one of these per user message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum UserContent {
    Text(String),
    SuggestionResponse(SuggestionResponse),
    Location(Location),
    UserFile(UserFile),
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionResponse {
    pub postback_data: Option<String>,
    pub text: Option<String>,
    /// `REPLY` or `ACTION`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Location {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct UserFile {
    pub thumbnail: Option<FileInfo>,
    pub payload: Option<FileInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub mime_type: Option<String>,
    pub file_size_bytes: Option<u64>,
    pub file_uri: Option<String>,
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEvent {
    pub agent_id: Option<String>,
    pub sender_phone_number: Option<String>,
    /// The agent message this is about; only on DELIVERED and READ.
    pub message_id: Option<String>,
    pub event_id: Option<String>,
    pub send_time: Option<String>,
    pub event_type: UserEventType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum UserEventType {
    Delivered,
    Read,
    IsTyping,
    Subscribe,
    Unsubscribe,
    /// A type RBM added after this code was written.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerEvent {
    pub agent_id: Option<String>,
    /// ServerEvent says `phoneNumber` where user events say `senderPhoneNumber`.
    pub phone_number: Option<String>,
    pub message_id: Option<String>,
    pub event_id: Option<String>,
    pub send_time: Option<String>,
    pub event_type: ServerEventType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLaunch {
    pub agent_id: Option<String>,
    pub event_id: Option<String>,
    pub send_time: Option<String>,
    /// `LAUNCH_STATE_LAUNCHED`, `LAUNCH_STATE_SUSPENDED`, …, as RBM sent it.
    pub new_launch_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ServerEventType {
    /// The message expired undelivered and was revoked.
    TtlExpirationRevoked,
    /// The message expired but revoking failed: it may still be delivered.
    TtlExpirationRevokeFailed,
    Other(String),
}

/// The decoded data is not JSON, not a JSON object, or a known field has the wrong type.
/// Carries the bytes back so the caller can log what it could not understand.
#[derive(Debug, PartialEq, Eq)]
pub struct NotUnderstood {
    pub why: String,
    pub data: Vec<u8>,
}

// Every key RBM uses, each optional; unknown keys are skipped here and kept in `raw`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    agent_id: Option<String>,
    sender_phone_number: Option<String>,
    phone_number: Option<String>,
    message_id: Option<String>,
    event_id: Option<String>,
    send_time: Option<String>,
    event_type: Option<String>,
    text: Option<String>,
    // Content objects are read leniently, field by field (below): an odd field inside one must not
    // make the whole verified event "not understood".
    suggestion_response: Option<serde_json::Value>,
    location: Option<serde_json::Value>,
    user_file: Option<serde_json::Value>,
    // AgentLaunchEvent: flat, or wrapped in a PartnerEvent's `agentLaunchEvent`.
    new_launch_state: Option<String>,
    agent_launch_event: Option<serde_json::Value>,
}

// Content objects are read field by field: a field of an unexpected type (say a size sent as
// a string) becomes `None` rather than losing the event; the raw JSON keeps it. (Done by hand
// rather than with serde's derive over a `Value`: same result, a fraction of the wasm.)
fn str_field(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(serde_json::Value::as_str).map(String::from)
}

fn suggestion_response(v: &serde_json::Value) -> SuggestionResponse {
    SuggestionResponse {
        postback_data: str_field(v, "postbackData"),
        text: str_field(v, "text"),
        kind: str_field(v, "type"),
    }
}

fn location(v: &serde_json::Value) -> Location {
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    Location { latitude: num("latitude"), longitude: num("longitude") }
}

fn file_info(v: &serde_json::Value) -> Option<FileInfo> {
    v.is_object().then(|| FileInfo {
        mime_type: str_field(v, "mimeType"),
        file_size_bytes: v.get("fileSizeBytes").and_then(serde_json::Value::as_u64),
        file_uri: str_field(v, "fileUri"),
        file_name: str_field(v, "fileName"),
    })
}

fn user_file(v: &serde_json::Value) -> UserFile {
    UserFile {
        thumbnail: v.get("thumbnail").and_then(file_info),
        payload: v.get("payload").and_then(file_info),
    }
}

impl Decoded {
    /// Decodes the bytes of `message.data` (after the signature was verified) in one parse:
    /// deserialising into `Wire` checks the whole document (unknown fields are still parsed,
    /// just not kept), so success proves the bytes are one JSON object and the raw text can be
    /// kept without a second validation pass.
    pub fn from_bytes(data: Vec<u8>) -> Result<Decoded, NotUnderstood> {
        let starts_with_brace = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if !starts_with_brace {
            return Err(NotUnderstood { why: "the event is not a JSON object".into(), data });
        }
        // UTF-8 first, then the text reader: the one JSON parser the wasm has (core::json).
        let raw = match String::from_utf8(data) {
            Ok(raw) => raw,
            Err(e) => {
                return Err(NotUnderstood { why: "the event is not UTF-8".into(), data: e.into_bytes() })
            }
        };
        match serde_json::from_str::<Wire>(&raw) {
            Ok(wire) => Ok(Decoded { event: RbmEvent::from_wire(wire), raw }),
            Err(e) => Err(NotUnderstood {
                why: format!("the event is not valid RBM JSON: {e}"),
                data: raw.into_bytes(),
            }),
        }
    }
}

impl RbmEvent {
    fn from_wire(w: Wire) -> RbmEvent {
        if let Some(event_type) = w.event_type {
            let server_type = match event_type.as_str() {
                "TTL_EXPIRATION_REVOKED" => Some(ServerEventType::TtlExpirationRevoked),
                "TTL_EXPIRATION_REVOKE_FAILED" => Some(ServerEventType::TtlExpirationRevokeFailed),
                _ if w.phone_number.is_some() && w.sender_phone_number.is_none() => {
                    Some(ServerEventType::Other(event_type.clone()))
                }
                _ => None,
            };
            if let Some(event_type) = server_type {
                return RbmEvent::ServerEvent(ServerEvent {
                    agent_id: w.agent_id,
                    phone_number: w.phone_number.or(w.sender_phone_number),
                    message_id: w.message_id,
                    event_id: w.event_id,
                    send_time: w.send_time,
                    event_type,
                });
            }
            let event_type = match event_type.as_str() {
                "DELIVERED" => UserEventType::Delivered,
                "READ" => UserEventType::Read,
                "IS_TYPING" => UserEventType::IsTyping,
                "SUBSCRIBE" => UserEventType::Subscribe,
                "UNSUBSCRIBE" => UserEventType::Unsubscribe,
                _ => UserEventType::Other(event_type),
            };
            return RbmEvent::UserEvent(UserEvent {
                agent_id: w.agent_id,
                sender_phone_number: w.sender_phone_number.or(w.phone_number),
                message_id: w.message_id,
                event_id: w.event_id,
                send_time: w.send_time,
                event_type,
            });
        }
        let (content, object) = if let Some(t) = w.text {
            (UserContent::Text(t), None)
        } else if let Some(s) = w.suggestion_response {
            (UserContent::SuggestionResponse(suggestion_response(&s)), Some(s))
        } else if let Some(l) = w.location {
            (UserContent::Location(location(&l)), Some(l))
        } else if let Some(f) = w.user_file {
            (UserContent::UserFile(user_file(&f)), Some(f))
        } else if let Some(l) = w.agent_launch_event.filter(serde_json::Value::is_object) {
            return RbmEvent::AgentLaunch(AgentLaunch {
                agent_id: str_field(&l, "agentId").or(w.agent_id),
                event_id: str_field(&l, "eventId").or(w.event_id),
                send_time: str_field(&l, "sendTime").or(w.send_time),
                new_launch_state: str_field(&l, "newLaunchState"),
            });
        } else if w.new_launch_state.is_some() {
            return RbmEvent::AgentLaunch(AgentLaunch {
                agent_id: w.agent_id,
                event_id: w.event_id,
                send_time: w.send_time,
                new_launch_state: w.new_launch_state,
            });
        } else {
            return RbmEvent::Unknown;
        };
        RbmEvent::UserMessage(UserMessage {
            agent_id: w.agent_id,
            sender_phone_number: w.sender_phone_number,
            message_id: w.message_id,
            send_time: w.send_time,
            content,
            content_object: object.filter(serde_json::Value::is_object),
        })
    }

    /// The event's kind as one word: a user message's content key (`text`,
    /// `suggestionResponse`, `location`, `userFile`) or the `eventType` value. These are the
    /// names `FORWARD_KINDS` and the logs use.
    pub fn kind(&self) -> &str {
        match self {
            RbmEvent::UserMessage(m) => match m.content {
                UserContent::Text(_) => "text",
                UserContent::SuggestionResponse(_) => "suggestionResponse",
                UserContent::Location(_) => "location",
                UserContent::UserFile(_) => "userFile",
            },
            RbmEvent::UserEvent(e) => match &e.event_type {
                UserEventType::Delivered => "DELIVERED",
                UserEventType::Read => "READ",
                UserEventType::IsTyping => "IS_TYPING",
                UserEventType::Subscribe => "SUBSCRIBE",
                UserEventType::Unsubscribe => "UNSUBSCRIBE",
                UserEventType::Other(s) => s,
            },
            RbmEvent::ServerEvent(e) => match &e.event_type {
                ServerEventType::TtlExpirationRevoked => "TTL_EXPIRATION_REVOKED",
                ServerEventType::TtlExpirationRevokeFailed => "TTL_EXPIRATION_REVOKE_FAILED",
                ServerEventType::Other(s) => s,
            },
            RbmEvent::AgentLaunch(_) => "agentLaunch",
            RbmEvent::Unknown => "unknown",
        }
    }

    pub fn agent_id(&self) -> Option<&str> {
        match self {
            RbmEvent::UserMessage(m) => m.agent_id.as_deref(),
            RbmEvent::UserEvent(e) => e.agent_id.as_deref(),
            RbmEvent::ServerEvent(e) => e.agent_id.as_deref(),
            RbmEvent::AgentLaunch(e) => e.agent_id.as_deref(),
            RbmEvent::Unknown => None,
        }
    }

    /// The user's phone number (`senderPhoneNumber`, or `phoneNumber` on server events).
    pub fn phone_number(&self) -> Option<&str> {
        match self {
            RbmEvent::UserMessage(m) => m.sender_phone_number.as_deref(),
            RbmEvent::UserEvent(e) => e.sender_phone_number.as_deref(),
            RbmEvent::ServerEvent(e) => e.phone_number.as_deref(),
            RbmEvent::AgentLaunch(_) | RbmEvent::Unknown => None,
        }
    }

    /// On user messages the user's message id; on events the agent message they refer to.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            RbmEvent::UserMessage(m) => m.message_id.as_deref(),
            RbmEvent::UserEvent(e) => e.message_id.as_deref(),
            RbmEvent::ServerEvent(e) => e.message_id.as_deref(),
            RbmEvent::AgentLaunch(_) | RbmEvent::Unknown => None,
        }
    }

    pub fn event_id(&self) -> Option<&str> {
        match self {
            RbmEvent::UserEvent(e) => e.event_id.as_deref(),
            RbmEvent::ServerEvent(e) => e.event_id.as_deref(),
            RbmEvent::AgentLaunch(e) => e.event_id.as_deref(),
            RbmEvent::UserMessage(_) | RbmEvent::Unknown => None,
        }
    }

    pub fn send_time(&self) -> Option<&str> {
        match self {
            RbmEvent::UserMessage(m) => m.send_time.as_deref(),
            RbmEvent::UserEvent(e) => e.send_time.as_deref(),
            RbmEvent::ServerEvent(e) => e.send_time.as_deref(),
            RbmEvent::AgentLaunch(e) => e.send_time.as_deref(),
            RbmEvent::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMON: &str = r#""agentId":"AGENT_ID","senderPhoneNumber":"+12223334444","messageId":"MSG_ID","sendTime":"2018-12-31T15:01:23.045123456Z""#;

    fn decode(s: &str) -> Decoded {
        Decoded::from_bytes(s.as_bytes().to_vec()).expect("decodes")
    }

    #[test]
    fn user_messages_from_the_protocol_sheet() {
        let cases = [
            (format!(r#"{{{COMMON},"text":"Hello, world!"}}"#), "text"),
            (
                format!(
                    r#"{{{COMMON},"suggestionResponse":{{"postbackData":"suggestion_1","text":"Suggestion #1","type":"REPLY"}}}}"#
                ),
                "suggestionResponse",
            ),
            (format!(r#"{{{COMMON},"location":{{"latitude":37.422,"longitude":-122.084056}}}}"#), "location"),
            (
                format!(
                    r#"{{{COMMON},"userFile":{{"thumbnail":{{"mimeType":"image/jpeg","fileSizeBytes":1280,"fileUri":"https://x/t","fileName":"a.jpeg"}},"payload":{{"mimeType":"image/gif","fileSizeBytes":127806,"fileUri":"https://x/p","fileName":"a.gif"}}}}}}"#
                ),
                "userFile",
            ),
        ];
        for (json, kind) in cases {
            let d = decode(&json);
            assert_eq!(d.event.kind(), kind);
            assert_eq!(d.event.agent_id(), Some("AGENT_ID"));
            assert_eq!(d.event.phone_number(), Some("+12223334444"));
            assert_eq!(d.event.message_id(), Some("MSG_ID"));
            assert_eq!(d.event.send_time(), Some("2018-12-31T15:01:23.045123456Z"));
            assert_eq!(d.raw, json, "raw kept verbatim");
        }
        let d = decode(&format!(r#"{{{COMMON},"location":{{"latitude":37.422,"longitude":-122.084056}}}}"#));
        let RbmEvent::UserMessage(UserMessage { content: UserContent::Location(l), .. }) = d.event else {
            panic!("location")
        };
        assert_eq!(l.latitude, Some(37.422));
        let d = decode(&format!(
            r#"{{{COMMON},"userFile":{{"payload":{{"fileSizeBytes":127806,"fileUri":"https://x/p"}}}}}}"#
        ));
        let RbmEvent::UserMessage(UserMessage { content: UserContent::UserFile(f), .. }) = d.event else {
            panic!("userFile")
        };
        assert_eq!(f.payload.and_then(|p| p.file_size_bytes), Some(127806));
    }

    #[test]
    fn user_events_of_every_type() {
        for t in ["DELIVERED", "READ", "IS_TYPING", "SUBSCRIBE", "UNSUBSCRIBE"] {
            let d = decode(&format!(r#"{{{COMMON},"eventId":"EVENT_ID","eventType":"{t}"}}"#));
            assert!(matches!(d.event, RbmEvent::UserEvent(_)), "{t}");
            assert_eq!(d.event.kind(), t);
            assert_eq!(d.event.event_id(), Some("EVENT_ID"));
        }
        let d = decode(r#"{"senderPhoneNumber":"+1","eventType":"IS_TYPING","eventId":"E"}"#);
        assert_eq!(d.event.message_id(), None, "IS_TYPING has no messageId");
    }

    #[test]
    fn agent_launch_events_flat_or_wrapped() {
        let flat = r#"{"eventId":"E1","agentId":"brand_agent","botDisplayName":"Bot","brandId":"b","regionId":"/v1/regions/fi-rcs","oldLaunchState":"LAUNCH_STATE_PENDING","newLaunchState":"LAUNCH_STATE_LAUNCHED","actingParty":"carrier","sendTime":"2026-07-01T10:00:00Z"}"#;
        let wrapped = format!(r#"{{"agentLaunchEvent":{flat}}}"#);
        for json in [flat, wrapped.as_str()] {
            let d = decode(json);
            let RbmEvent::AgentLaunch(l) = &d.event else { panic!("{json}") };
            assert_eq!(d.event.kind(), "agentLaunch");
            assert_eq!(d.event.agent_id(), Some("brand_agent"));
            assert_eq!(d.event.event_id(), Some("E1"));
            assert_eq!(d.event.phone_number(), None);
            assert_eq!(l.new_launch_state.as_deref(), Some("LAUNCH_STATE_LAUNCHED"));
            assert_eq!(d.raw, json, "kept verbatim");
        }
    }

    #[test]
    fn server_events_use_phone_number() {
        for t in ["TTL_EXPIRATION_REVOKED", "TTL_EXPIRATION_REVOKE_FAILED"] {
            let d = decode(&format!(
                r#"{{"phoneNumber":"+12223334444","agentId":"AGENT_ID","messageId":"MSG_ID","eventId":"EVENT_ID","eventType":"{t}","sendTime":"2018-12-31T15:01:23.045123456Z"}}"#
            ));
            assert!(matches!(d.event, RbmEvent::ServerEvent(_)), "{t}");
            assert_eq!(d.event.kind(), t);
            assert_eq!(d.event.phone_number(), Some("+12223334444"));
            assert_eq!(d.event.message_id(), Some("MSG_ID"));
        }
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated_and_kept() {
        let d = decode(r#"{"phoneNumber":"+1","eventType":"SOME_NEW_SERVER_EVENT","future":{"x":[1,2]}}"#);
        assert!(
            matches!(&d.event, RbmEvent::ServerEvent(e) if e.event_type == ServerEventType::Other("SOME_NEW_SERVER_EVENT".into()))
        );
        assert_eq!(d.event.kind(), "SOME_NEW_SERVER_EVENT");
        assert!(d.raw.contains(r#""future":{"x":[1,2]}"#));

        let d = decode(r#"{"senderPhoneNumber":"+1","eventType":"REACTION","reaction":"👍"}"#);
        assert!(
            matches!(&d.event, RbmEvent::UserEvent(e) if e.event_type == UserEventType::Other("REACTION".into()))
        );

        let d = decode(&format!(r#"{{{COMMON},"sticker":{{"id":"s1"}}}}"#));
        assert_eq!(d.event, RbmEvent::Unknown);
        assert_eq!(d.event.kind(), "unknown");

        let d = decode(&format!(
            r#"{{{COMMON},"text":"hi","richMessageClassification":{{"x":1}},"carrier":"c"}}"#
        ));
        assert_eq!(d.event.kind(), "text");
        assert!(d.raw.contains("richMessageClassification"));
    }

    #[test]
    fn odd_fields_inside_content_do_not_lose_the_event() {
        let d = decode(
            r#"{"senderPhoneNumber":"+1","messageId":"U","userFile":{"payload":{"fileUri":"https://x/p","fileSizeBytes":"127806"},"thumbnail":7}}"#,
        );
        let RbmEvent::UserMessage(UserMessage { content: UserContent::UserFile(f), .. }) = &d.event else {
            panic!("still a userFile: {:?}", d.event)
        };
        assert!(f.thumbnail.is_none());
        assert_eq!(d.event.kind(), "userFile");
        let d = decode(
            r#"{"senderPhoneNumber":"+1","messageId":"U","location":{"latitude":"37.4","longitude":-122.08}}"#,
        );
        let RbmEvent::UserMessage(UserMessage { content: UserContent::Location(l), .. }) = &d.event else {
            panic!("still a location")
        };
        assert_eq!((l.latitude, l.longitude), (None, Some(-122.08)));
        assert_eq!(
            decode(r#"{"senderPhoneNumber":"+1","suggestionResponse":"x"}"#).event.kind(),
            "suggestionResponse"
        );
    }

    #[test]
    fn not_understood() {
        for bad in [
            &b"\xff"[..],
            b"not json",
            b"[1,2]",
            b"\"str\"",
            b"12",
            br#"{"text":5}"#,
            br#"{"eventType":["READ"]}"#,
        ] {
            assert!(Decoded::from_bytes(bad.to_vec()).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
