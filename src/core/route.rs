//! Where each inbound event goes. One decision, in one place: the shell executes the
//! targets returned here, one match arm per target kind.

use super::event::{RbmEvent, ServerEventType, UserEventType};
use super::status::RecordType;

/// Something to do with a verified event (logging happens for every event regardless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Record this event type for the agent message it refers to (`msg:{id}:{TYPE}`).
    RecordStatus(RecordType),
    /// POST the normalized event to the business backend (`FORWARD_URL`).
    Forward,
}

/// Default `FORWARD_KINDS`: everything but IS_TYPING (chatty, opt-in) and kinds we do not know.
pub const DEFAULT_FORWARD_KINDS: &str = "text,suggestionResponse,location,userFile,SUBSCRIBE,UNSUBSCRIBE,DELIVERED,READ,TTL_EXPIRATION_REVOKED,TTL_EXPIRATION_REVOKE_FAILED,agentLaunch";

/// The set of event kinds forwarded to the backend (names as `RbmEvent::kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardKinds(Vec<String>);

impl ForwardKinds {
    /// Parses a comma-separated list; `*` forwards every kind, unknown ones included.
    pub fn parse(list: &str) -> ForwardKinds {
        ForwardKinds(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.0.iter().any(|k| k == kind || k == "*")
    }
}

impl Default for ForwardKinds {
    fn default() -> Self {
        ForwardKinds::parse(DEFAULT_FORWARD_KINDS)
    }
}

/// The status record an event stands for, if any: receipts and TTL notices about an agent
/// message. User messages, IS_TYPING and (UN)SUBSCRIBE have none.
pub fn status_record(event: &RbmEvent) -> Option<RecordType> {
    match event {
        RbmEvent::UserEvent(e) => match e.event_type {
            UserEventType::Delivered => Some(RecordType::Delivered),
            UserEventType::Read => Some(RecordType::Read),
            _ => None,
        },
        RbmEvent::ServerEvent(e) => match e.event_type {
            ServerEventType::TtlExpirationRevoked => Some(RecordType::TtlExpirationRevoked),
            ServerEventType::TtlExpirationRevokeFailed => Some(RecordType::TtlExpirationRevokeFailed),
            ServerEventType::Other(_) => None,
        },
        RbmEvent::UserMessage(_) | RbmEvent::AgentLaunch(_) | RbmEvent::Unknown => None,
    }
}

/// Every target of `event`. `forward` is `None` when no backend is configured.
pub fn targets(event: &RbmEvent, forward: Option<&ForwardKinds>) -> Vec<Target> {
    let mut out = Vec::with_capacity(2);
    if let Some(t) = status_record(event) {
        out.push(Target::RecordStatus(t));
    }
    if forward.is_some_and(|k| k.contains(event.kind())) {
        out.push(Target::Forward);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Decoded;

    fn ev(json: &str) -> RbmEvent {
        Decoded::from_bytes(json.as_bytes().to_vec()).expect("decodes").event
    }

    #[test]
    fn receipts_and_ttl_notices_record_status() {
        let cases = [
            (
                r#"{"senderPhoneNumber":"+1","messageId":"m","eventType":"DELIVERED"}"#,
                Some(RecordType::Delivered),
            ),
            (r#"{"senderPhoneNumber":"+1","messageId":"m","eventType":"READ"}"#, Some(RecordType::Read)),
            (
                r#"{"phoneNumber":"+1","messageId":"m","eventType":"TTL_EXPIRATION_REVOKED"}"#,
                Some(RecordType::TtlExpirationRevoked),
            ),
            (
                r#"{"phoneNumber":"+1","messageId":"m","eventType":"TTL_EXPIRATION_REVOKE_FAILED"}"#,
                Some(RecordType::TtlExpirationRevokeFailed),
            ),
            (r#"{"senderPhoneNumber":"+1","eventType":"IS_TYPING"}"#, None),
            (r#"{"senderPhoneNumber":"+1","eventType":"SUBSCRIBE"}"#, None),
            (r#"{"senderPhoneNumber":"+1","messageId":"u","text":"hi"}"#, None),
            (r#"{"whatever":1}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(status_record(&ev(json)), want, "{json}");
        }
    }

    #[test]
    fn forward_kinds_filter() {
        let def = ForwardKinds::default();
        let typing = ev(r#"{"senderPhoneNumber":"+1","eventType":"IS_TYPING"}"#);
        let text = ev(r#"{"senderPhoneNumber":"+1","messageId":"u","text":"hi"}"#);
        let read = ev(r#"{"senderPhoneNumber":"+1","messageId":"m","eventType":"READ"}"#);
        assert_eq!(targets(&typing, Some(&def)), vec![]);
        assert_eq!(targets(&text, Some(&def)), vec![Target::Forward]);
        assert_eq!(targets(&read, Some(&def)), vec![Target::RecordStatus(RecordType::Read), Target::Forward]);
        assert_eq!(targets(&read, None), vec![Target::RecordStatus(RecordType::Read)]);
        let only_typing = ForwardKinds::parse(" IS_TYPING , ");
        assert_eq!(targets(&typing, Some(&only_typing)), vec![Target::Forward]);
        assert_eq!(targets(&text, Some(&only_typing)), vec![]);
        let all = ForwardKinds::parse("*");
        assert_eq!(targets(&ev(r#"{"x":1}"#), Some(&all)), vec![Target::Forward]);
    }
}
