//! The documents rbm-edge sends to the business backend: the normalized event (forwarding)
//! and the id that makes redeliveries recognisable (`webhook-id`).

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::event::{Decoded, RbmEvent};
use super::time::format_rfc3339_millis;

/// A stable id for an RBM event, the same on every redelivery of it: RBM's `eventId` (events),
/// else the user message's `messageId`, else the Pub/Sub message id, else a hash of the
/// event's bytes. Backends deduplicate on it.
pub fn stable_event_id(decoded: &Decoded, pubsub_message_id: Option<&str>) -> String {
    let event = &decoded.event;
    if let Some(id) = event.event_id() {
        return format!("rbm_evt_{id}");
    }
    if let (RbmEvent::UserMessage(_), Some(id)) = (event, event.message_id()) {
        return format!("rbm_msg_{id}");
    }
    if let Some(id) = pubsub_message_id {
        return format!("rbm_pubsub_{id}");
    }
    let digest = Sha256::digest(decoded.raw.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("rbm_sha256_{hex}")
}

/// `{"type":"event","id","kind","agentId","phoneNumber","messageId"?,"eventId"?,"sentAt","receivedAt","webhookType"?,"event"}`
/// with `event` = RBM's JSON verbatim and `webhookType` Google's `X-Goog-Webhook-Type`. `type` tells it apart from a status callback
/// (`"message.status"`), which may be signed with the same key.
pub fn forward_document(
    decoded: &Decoded,
    id: &str,
    received_at_ms: u64,
    webhook_type: Option<&str>,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc<'a> {
        #[serde(rename = "type")]
        doc_type: &'static str,
        id: &'a str,
        kind: &'a str,
        agent_id: Option<&'a str>,
        phone_number: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<&'a str>,
        sent_at: Option<&'a str>,
        received_at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_type: Option<&'a str>,
        event: &'a RawValue,
    }
    let e = &decoded.event;
    // `raw` is a validated JSON object (Decoded's invariant), so this cannot fail; the
    // fallback keeps the function total.
    let fallback;
    let event: &RawValue = match serde_json::from_str::<&RawValue>(&decoded.raw) {
        Ok(r) => r,
        Err(_) => {
            fallback = RawValue::from_string("{}".into()).ok();
            match &fallback {
                Some(f) => f,
                None => return String::new(),
            }
        }
    };
    let doc = Doc {
        doc_type: "event",
        id,
        kind: e.kind(),
        agent_id: e.agent_id(),
        phone_number: e.phone_number(),
        message_id: e.message_id(),
        event_id: e.event_id(),
        sent_at: e.send_time(),
        received_at: format_rfc3339_millis(received_at_ms),
        webhook_type,
        event,
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

/// `https://host:port` of a URL: what errors and logs name, since the path and query of a
/// webhook URL often carry credentials.
pub fn url_origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url.get(after_scheme..)
        .and_then(|rest| rest.find(['/', '?', '#']))
        .and_then(|end| url.get(..after_scheme + end))
        .unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Decoded {
        Decoded::from_bytes(s.as_bytes().to_vec()).expect("decodes")
    }

    #[test]
    fn origins_hide_paths_and_queries() {
        assert_eq!(url_origin("https://b.example.com/hooks/rbm?token=s3cret"), "https://b.example.com");
        assert_eq!(url_origin("http://127.0.0.1:9000/cb/x"), "http://127.0.0.1:9000");
        assert_eq!(url_origin("https://b.example.com?k=v"), "https://b.example.com");
        assert_eq!(url_origin("https://b.example.com"), "https://b.example.com");
        assert_eq!(url_origin("ünïcode://x/y"), "ünïcode://x");
    }

    #[test]
    fn stable_ids_prefer_rbm_ids() {
        let receipt =
            decode(r#"{"senderPhoneNumber":"+1","messageId":"m","eventId":"E1","eventType":"READ"}"#);
        assert_eq!(stable_event_id(&receipt, Some("p")), "rbm_evt_E1");
        let text = decode(r#"{"senderPhoneNumber":"+1","messageId":"U1","text":"hi"}"#);
        assert_eq!(stable_event_id(&text, Some("p")), "rbm_msg_U1");
        let bare = decode(r#"{"x":1}"#);
        assert_eq!(stable_event_id(&bare, Some("p9")), "rbm_pubsub_p9");
        let a = stable_event_id(&bare, None);
        assert_eq!(a, stable_event_id(&decode(r#"{"x":1}"#), None), "same bytes, same id");
        assert_ne!(a, stable_event_id(&decode(r#"{"x":2}"#), None));
        assert!(a.starts_with("rbm_sha256_") && a.len() == "rbm_sha256_".len() + 32);
    }

    #[test]
    fn forward_document_embeds_the_event_verbatim() {
        let raw = r#"{"agentId":"A","senderPhoneNumber":"+12223334444","messageId":"U1","sendTime":"2018-12-31T15:01:23.045123456Z","text":"Hello, world!","future":[1]}"#;
        let d = decode(raw);
        let doc = forward_document(&d, "rbm_msg_U1", 1_546_268_484_000, Some("user_message"));
        assert!(doc.contains(&format!(r#""event":{raw}"#)), "{doc}");
        let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
        assert_eq!(v["type"], "event");
        assert_eq!(v["id"], "rbm_msg_U1");
        assert_eq!(v["kind"], "text");
        assert_eq!(v["agentId"], "A");
        assert_eq!(v["phoneNumber"], "+12223334444");
        assert_eq!(v["messageId"], "U1");
        assert!(v.get("eventId").is_none());
        assert_eq!(v["sentAt"], "2018-12-31T15:01:23.045123456Z");
        assert_eq!(v["receivedAt"], "2018-12-31T15:01:24.000Z");
        assert_eq!(v["webhookType"], "user_message");
        let without = forward_document(&d, "rbm_msg_U1", 1_546_268_484_000, None);
        assert!(!without.contains("webhookType"), "{without}");
    }
}
