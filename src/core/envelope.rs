//! What RBM POSTs to the webhook: either the one-time registration handshake or a
//! Pub/Sub-style envelope whose `message.data` is the base64 of the event's JSON.
//!
//! Parsing is lenient (Google documents only `message.data`; Pub/Sub push adds
//! `messageId`/`message_id`, `publishTime`/`publish_time`, `attributes`, `subscription`) but
//! strict about what we rely on: a `message` object with a string `data` that is base64.

use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest webhook body accepted (RBM events are a few KB; a user file is a URI, not bytes).
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// A parsed webhook body.
#[derive(Debug, PartialEq)]
pub enum WebhookBody {
    /// `{"clientToken":"…","secret":"…"}`: answer the secret if the token is ours.
    Handshake { client_token: String, secret: String },
    /// An event delivery; `data` is already base64-decoded (the bytes that are signed).
    Event(Envelope),
}

/// The envelope of one event delivery.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    /// The decoded bytes of `message.data`: the event JSON, and the input of the signature.
    pub data: Vec<u8>,
    /// Pub/Sub's message id, when present: the most stable id of a redelivered event.
    pub pubsub_message_id: Option<String>,
    pub publish_time: Option<String>,
    pub attributes: Option<Map<String, Value>>,
    pub subscription: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Body is not a JSON object.
    NotJson,
    /// JSON, but neither a handshake nor an envelope with `message.data`.
    NotAnEnvelope(&'static str),
    /// `message.data` is not base64.
    BadBase64,
}

impl EnvelopeError {
    pub fn describe(&self) -> &'static str {
        match self {
            EnvelopeError::NotJson => "it could not be parsed",
            EnvelopeError::NotAnEnvelope(why) => why,
            EnvelopeError::BadBase64 => "message.data is not valid base64",
        }
    }
}

// One pass over the body: every field we might need, each optional, so a handshake and an
// envelope share a parse. Types are checked here (a non-string `secret` fails the parse).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    client_token: Option<Value>,
    secret: Option<Value>,
    message: Option<WireMessage>,
    subscription: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    data: Option<Value>,
    // Pub/Sub push sends both spellings of each (Google's own samples show both): separate
    // fields, since serde rejects an alias that appears twice as a duplicate field.
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time: Option<String>,
    #[serde(rename = "publish_time")]
    publish_time_snake: Option<String>,
    attributes: Option<Map<String, Value>>,
}

/// Parses a webhook body. Does not verify anything: the caller checks the handshake token or
/// the event signature next.
pub fn parse_webhook_body(body: &[u8]) -> Result<WebhookBody, EnvelopeError> {
    // Not UTF-8 is not JSON either; parsing text keeps to the one JSON reader the wasm has.
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(EnvelopeError::NotJson);
    };
    let wire: Wire = match serde_json::from_str(text) {
        Ok(w) => w,
        // Valid JSON of the wrong shape (array, string, wrong field types) vs not JSON at all.
        Err(e) if e.is_data() => {
            return Err(EnvelopeError::NotAnEnvelope(
                "the body is JSON but not an RBM webhook envelope (a field has the wrong type)",
            ))
        }
        Err(_) => return Err(EnvelopeError::NotJson),
    };
    if let Some(msg) = wire.message {
        let data = match msg.data {
            Some(Value::String(s)) => s,
            Some(_) => return Err(EnvelopeError::NotAnEnvelope("message.data must be a string")),
            None => return Err(EnvelopeError::NotAnEnvelope("message.data is missing")),
        };
        let data = decode_data(&data)?;
        return Ok(WebhookBody::Event(Envelope {
            data,
            pubsub_message_id: msg.message_id.or(msg.message_id_snake),
            publish_time: msg.publish_time.or(msg.publish_time_snake),
            attributes: msg.attributes,
            subscription: wire.subscription,
        }));
    }
    match (wire.client_token, wire.secret) {
        (Some(Value::String(client_token)), Some(Value::String(secret))) => {
            Ok(WebhookBody::Handshake { client_token, secret })
        }
        (None, None) => {
            Err(EnvelopeError::NotAnEnvelope("the body has neither message.data nor clientToken and secret"))
        }
        _ => Err(EnvelopeError::NotAnEnvelope("a handshake needs string clientToken and secret")),
    }
}

/// Decodes `message.data`: standard base64 alphabet, padding optional (the decoded bytes are
/// what is signed, so accepting either padding form cannot let a forgery through).
pub fn decode_data(data: &str) -> Result<Vec<u8>, EnvelopeError> {
    STANDARD_PAD_INDIFFERENT.decode(data.as_bytes()).map_err(|_| EnvelopeError::BadBase64)
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_from_the_docs() {
        let b = br#"{"clientToken":"SJENCPGJESMGUFPY","secret":"1234567890"}"#;
        assert_eq!(
            parse_webhook_body(b),
            Ok(WebhookBody::Handshake {
                client_token: "SJENCPGJESMGUFPY".into(),
                secret: "1234567890".into()
            })
        );
    }

    #[test]
    fn minimal_envelope() {
        // base64 of {"a":1}
        let WebhookBody::Event(env) =
            parse_webhook_body(br#"{"message":{"data":"eyJhIjoxfQ=="}}"#).expect("parses")
        else {
            panic!("not an event")
        };
        assert_eq!(env.data, br#"{"a":1}"#);
        assert_eq!(env.pubsub_message_id, None);
    }

    #[test]
    fn pubsub_extras_kept_and_unknown_fields_tolerated() {
        let b = br#"{"message":{"data":"eyJhIjoxfQ","messageId":"136969346945","publishTime":"2018-12-31T15:01:23.045Z","attributes":{"k":"v"},"x":1},"subscription":"projects/p/subscriptions/s","extra":true}"#;
        let WebhookBody::Event(env) = parse_webhook_body(b).expect("parses") else { panic!("not an event") };
        assert_eq!(env.data, br#"{"a":1}"#, "unpadded base64 accepted");
        assert_eq!(env.pubsub_message_id.as_deref(), Some("136969346945"));
        assert_eq!(env.publish_time.as_deref(), Some("2018-12-31T15:01:23.045Z"));
        assert_eq!(env.subscription.as_deref(), Some("projects/p/subscriptions/s"));
        let both = br#"{"message":{"data":"eyJhIjoxfQ==","messageId":"9","message_id":"9","publishTime":"t","publish_time":"t"}}"#;
        let WebhookBody::Event(env) = parse_webhook_body(both).expect("both spellings") else { panic!() };
        assert_eq!((env.pubsub_message_id.as_deref(), env.publish_time.as_deref()), (Some("9"), Some("t")));
        let b = br#"{"message":{"data":"eyJhIjoxfQ==","message_id":"9"}}"#;
        let WebhookBody::Event(env) = parse_webhook_body(b).expect("parses") else { panic!() };
        assert_eq!(env.pubsub_message_id.as_deref(), Some("9"));
    }

    #[test]
    fn malformed_bodies() {
        use EnvelopeError::*;
        assert_eq!(parse_webhook_body(b""), Err(NotJson));
        assert_eq!(parse_webhook_body(b"{"), Err(NotJson));
        assert_eq!(parse_webhook_body(b"\xff\xfe"), Err(NotJson));
        assert!(matches!(parse_webhook_body(b"[]"), Err(NotAnEnvelope(_))));
        assert!(matches!(parse_webhook_body(b"{}"), Err(NotAnEnvelope(_))));
        assert!(matches!(parse_webhook_body(br#"{"message":{}}"#), Err(NotAnEnvelope(_))));
        assert!(matches!(parse_webhook_body(br#"{"message":{"data":5}}"#), Err(NotAnEnvelope(_))));
        assert!(matches!(parse_webhook_body(br#"{"message":"x"}"#), Err(NotAnEnvelope(_))));
        assert!(matches!(parse_webhook_body(br#"{"clientToken":"a"}"#), Err(NotAnEnvelope(_))));
        assert!(matches!(parse_webhook_body(br#"{"clientToken":"a","secret":1}"#), Err(NotAnEnvelope(_))));
        assert_eq!(parse_webhook_body(br#"{"message":{"data":"%%%"}}"#), Err(BadBase64));
        assert_eq!(parse_webhook_body(br#"{"message":{"data":"eyJhIjoxfQ=?"}}"#), Err(BadBase64));
        // URL-safe alphabet is not what Google sends: "-" and "_" are rejected.
        assert_eq!(parse_webhook_body(br#"{"message":{"data":"ab-_"}}"#), Err(BadBase64));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut s = String::new();
        for _ in 0..100_000 {
            s.push('[');
        }
        assert!(parse_webhook_body(s.as_bytes()).is_err());
    }
}
