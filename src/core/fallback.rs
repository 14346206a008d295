//! SMS fallback: the decisions (when a message falls back, when a pending fallback is
//! cancelled, what a deadline revoke's answer means) and the Twilio request, as pure functions.
//! The conversation object keeps the state and carries them out, at most once per message.
//!
//! Google's pattern for direct agents: when a message is not delivered in time, revoke it, and
//! only after a successful revoke send the SMS (a late RCS delivery plus an SMS is a duplicate
//! the user sees). RBM's 404 on send means the user is not RCS-reachable at all.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::status::RecordType;

/// Why a message fell back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// RBM answered the send with 404: the number is not RCS-reachable.
    NotReachable,
    /// The deadline passed undelivered and the revoke succeeded.
    Deadline,
    /// RBM revoked the message when its TTL expired.
    TtlExpired,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotReachable => "NOT_REACHABLE",
            Reason::Deadline => "DEADLINE",
            Reason::TtlExpired => "TTL_EXPIRED",
        }
    }
}

/// What a recorded event does to a fallback still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRecord {
    /// Delivered or read, or a TTL expiry whose revoke failed (it may still be delivered).
    Cancel,
    Fire(Reason),
    Nothing,
}

pub fn on_record(t: RecordType) -> OnRecord {
    match t {
        RecordType::Delivered | RecordType::Read | RecordType::TtlExpirationRevokeFailed => OnRecord::Cancel,
        RecordType::TtlExpirationRevoked => OnRecord::Fire(Reason::TtlExpired),
        _ => OnRecord::Nothing,
    }
}

/// What to do after a deadline revoke answered `status` (`None`: no answer at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRevoke {
    /// 200: revoked, so the SMS cannot duplicate a delivery.
    Fire,
    /// 404: it was delivered meanwhile (or RBM no longer knows it): no SMS.
    Cancel,
    /// Try the revoke again at this time (ms).
    RetryAt(u64),
    /// Tried for the whole window: record REVOKE_FAILED, send no SMS.
    GiveUp,
}

/// `deadline_ms`: when the first revoke was due; `window_ms`: how long to keep trying.
pub fn after_revoke(
    status: Option<u16>,
    attempts: u32,
    deadline_ms: u64,
    now_ms: u64,
    window_ms: u64,
) -> AfterRevoke {
    match status {
        Some(200..=299) => AfterRevoke::Fire,
        Some(404) => AfterRevoke::Cancel,
        _ => {
            let at = now_ms + backoff_ms(attempts, window_ms);
            if at > deadline_ms.saturating_add(window_ms) {
                AfterRevoke::GiveUp
            } else {
                AfterRevoke::RetryAt(at)
            }
        }
    }
}

/// 10 s doubling to 5 min, never more than a third of the window (short windows in tests).
pub fn backoff_ms(attempts: u32, window_ms: u64) -> u64 {
    let grown = 10_000u64.saturating_mul(1u64 << attempts.min(5));
    grown.min(300_000).min((window_ms / 3).max(1000))
}

/// Where SMS go when Twilio is configured (secrets `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`;
/// vars `TWILIO_FROM` or `TWILIO_MESSAGING_SERVICE_SID`, `TWILIO_API_BASE`).
#[derive(Clone, PartialEq, Eq)]
pub struct Twilio {
    pub account_sid: String,
    pub auth_token: String,
    pub sender: Sender,
    pub api_base: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    From(String),
    MessagingService(String),
}

/// The Messages API request: URL, headers and the form body.
pub struct TwilioRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Twilio {
    /// `POST /2010-04-01/Accounts/{Sid}/Messages.json`, basic auth, form `To`, `From` or
    /// `MessagingServiceSid`, `Body`, and `I-Twilio-Idempotency-Token` derived from the
    /// message id: a retried request never sends twice.
    pub fn request(&self, to: &str, text: &str, message_id: &str) -> TwilioRequest {
        let url =
            format!("{}/2010-04-01/Accounts/{}/Messages.json", self.api_base, form_encode(&self.account_sid));
        let auth = STANDARD.encode(format!("{}:{}", self.account_sid, self.auth_token));
        let (key, value) = match &self.sender {
            Sender::From(f) => ("From", f),
            Sender::MessagingService(s) => ("MessagingServiceSid", s),
        };
        let body = format!("To={}&{key}={}&Body={}", form_encode(to), form_encode(value), form_encode(text));
        TwilioRequest {
            url,
            headers: vec![
                ("authorization", format!("Basic {auth}")),
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("accept", "application/json".into()),
                ("i-twilio-idempotency-token", idempotency_token(message_id)),
            ],
            body,
        }
    }
}

pub fn idempotency_token(message_id: &str) -> String {
    format!("rbm-edge-fallback-{message_id}")
}

/// `application/x-www-form-urlencoded`: unreserved characters kept, everything else `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What Twilio's answer means for the SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsAnswer {
    Sent {
        sid: String,
    },
    /// Worth retrying (429, 5xx, no answer); the text says what happened.
    Retry(String),
    /// Twilio refused it (4xx): retrying cannot help.
    Failed(String),
}

pub fn sms_answer(status: Option<u16>, body: &str) -> SmsAnswer {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let twilio_error = || {
        let code = json.get("code").map(|c| c.to_string()).unwrap_or_else(|| "?".into());
        let message = json.get("message").and_then(Value::as_str).unwrap_or("no message");
        format!("Twilio {code}: {message}")
    };
    match status {
        Some(200..=299) => match json.get("sid").and_then(Value::as_str) {
            Some(sid) => SmsAnswer::Sent { sid: sid.to_string() },
            None => SmsAnswer::Retry("Twilio answered without a sid".into()),
        },
        Some(s @ (429 | 500..=599)) => SmsAnswer::Retry(format!("HTTP {s}, {}", twilio_error())),
        Some(s) => SmsAnswer::Failed(format!("HTTP {s}, {}", twilio_error())),
        None => SmsAnswer::Retry("Twilio could not be reached".into()),
    }
}

/// The document forwarded to `FORWARD_URL` when a message falls back: the business's cue
/// (and everything it needs to use another SMS provider).
pub fn forward_document(
    message_id: &str,
    agent_id: &str,
    phone: &str,
    reason: &str,
    at: &str,
    sms: &Value,
    content: &Value,
) -> (String, String) {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc<'a> {
        #[serde(rename = "type")]
        doc_type: &'static str,
        id: &'a str,
        kind: &'static str,
        agent_id: &'a str,
        phone_number: &'a str,
        message_id: &'a str,
        reason: &'a str,
        at: &'a str,
        sms: &'a Value,
        content: &'a Value,
    }
    let id = format!("rbm_fallback_{message_id}");
    let doc = Doc {
        doc_type: "event",
        id: &id,
        kind: "FALLBACK",
        agent_id,
        phone_number: phone,
        message_id,
        reason,
        at,
        sms,
        content,
    };
    let body = serde_json::to_string(&doc).unwrap_or_default();
    (id, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cancel_or_fire() {
        assert_eq!(on_record(RecordType::Delivered), OnRecord::Cancel);
        assert_eq!(on_record(RecordType::Read), OnRecord::Cancel);
        assert_eq!(on_record(RecordType::TtlExpirationRevokeFailed), OnRecord::Cancel);
        assert_eq!(on_record(RecordType::TtlExpirationRevoked), OnRecord::Fire(Reason::TtlExpired));
        assert_eq!(on_record(RecordType::Sent), OnRecord::Nothing);
    }

    #[test]
    fn revoke_answers() {
        const H: u64 = 3_600_000;
        assert_eq!(after_revoke(Some(200), 0, 0, 0, H), AfterRevoke::Fire);
        assert_eq!(after_revoke(Some(404), 0, 0, 0, H), AfterRevoke::Cancel);
        assert_eq!(after_revoke(Some(503), 0, 1000, 1000, H), AfterRevoke::RetryAt(11_000));
        assert_eq!(after_revoke(None, 2, 0, 0, H), AfterRevoke::RetryAt(40_000));
        assert_eq!(after_revoke(Some(500), 9, 0, 0, H), AfterRevoke::RetryAt(300_000));
        assert_eq!(after_revoke(Some(500), 9, 0, H - 1000, H), AfterRevoke::GiveUp);
        // a short window keeps retries short
        assert_eq!(backoff_ms(3, 6000), 2000);
        assert_eq!(backoff_ms(0, 600), 1000);
    }

    #[test]
    fn twilio_request_has_the_documented_shape() {
        let t = Twilio {
            account_sid: "AC123".into(),
            auth_token: "tok".into(),
            sender: Sender::From("+15005550006".into()),
            api_base: "http://127.0.0.1:9".into(),
        };
        let r = t.request("+12223334444", "Your code: 12 & 34", "m-1");
        assert_eq!(r.url, "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json");
        assert_eq!(r.body, "To=%2B12223334444&From=%2B15005550006&Body=Your%20code%3A%2012%20%26%2034");
        let h = |k: &str| r.headers.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(h("authorization"), Some("Basic QUMxMjM6dG9r")); // base64("AC123:tok")
        assert_eq!(h("i-twilio-idempotency-token"), Some("rbm-edge-fallback-m-1"));
        let m = Twilio { sender: Sender::MessagingService("MG9".into()), ..t };
        assert!(m.request("+1", "x", "m").body.contains("&MessagingServiceSid=MG9&"));
    }

    #[test]
    fn twilio_answers() {
        assert_eq!(
            sms_answer(Some(201), r#"{"sid":"SM1","status":"queued"}"#),
            SmsAnswer::Sent { sid: "SM1".into() }
        );
        assert!(matches!(sms_answer(Some(500), "{}"), SmsAnswer::Retry(_)));
        assert!(matches!(sms_answer(Some(429), ""), SmsAnswer::Retry(_)));
        assert!(matches!(sms_answer(None, ""), SmsAnswer::Retry(_)));
        let e = sms_answer(
            Some(400),
            r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#,
        );
        assert_eq!(
            e,
            SmsAnswer::Failed("HTTP 400, Twilio 21211: The 'To' number is not a valid phone number.".into())
        );
    }

    #[test]
    fn forward_document_is_typed_and_stable() {
        let (id, body) = forward_document(
            "m1",
            "a",
            "+12223334444",
            "DEADLINE",
            "t",
            &serde_json::json!({"text":"hi","status":"SENT"}),
            &serde_json::json!({"contentMessage":{"text":"hi"}}),
        );
        assert_eq!(id, "rbm_fallback_m1");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["kind"].as_str(), v["reason"].as_str()),
            (Some("event"), Some("FALLBACK"), Some("DEADLINE"))
        );
        assert_eq!(v["content"]["contentMessage"]["text"], "hi");
    }
}
