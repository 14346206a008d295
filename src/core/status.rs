//! Per-message status: which events are recorded, and the status they add up to.
//!
//! KV has no compare-and-set and is eventually consistent, so nothing here reads, modifies and
//! writes one record. Each (message, event type) is its own KV key, `msg:{messageId}:{TYPE}`,
//! written blindly; the status is a pure function of the **set** of types present, by
//! precedence. Duplicates rewrite the same key, arrival order does not matter and concurrent
//! writers never lose each other's events.
//!
//! Precedence: `READ` > `DELIVERED` > `FALLBACK` > `REVOKED` > `EXPIRED` > `REVOKE_FAILED` >
//! `SENT` > `FAILED`. DELIVERED beats the TTL notices (Google: both can arrive; a revoke can
//! lose the race) and a fallback (a late RCS delivery is still a delivery).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::RbmEvent;
use super::time::{format_rfc3339_millis, parse_rfc3339_nanos};

/// An event recorded for an agent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordType {
    /// The send relay got a 2xx from agentMessages.create.
    Sent,
    /// The send relay got a 4xx from agentMessages.create.
    SendFailed,
    /// The relay's revoke (agentMessages.delete) was accepted.
    RevokeRequested,
    Delivered,
    Read,
    TtlExpirationRevoked,
    TtlExpirationRevokeFailed,
    /// The message fell back to SMS (details in the record's `fallback`).
    Fallback,
    /// A deadline revoke kept failing: no SMS was sent, the RCS message may still arrive.
    RevokeFailed,
}

/// The status a set of records adds up to. Declared in ascending precedence, so `max` wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Failed,
    Sent,
    RevokeFailed,
    Expired,
    Revoked,
    Fallback,
    Delivered,
    Read,
}

impl RecordType {
    pub const ALL: [RecordType; 9] = [
        RecordType::Sent,
        RecordType::SendFailed,
        RecordType::RevokeRequested,
        RecordType::Delivered,
        RecordType::Read,
        RecordType::TtlExpirationRevoked,
        RecordType::TtlExpirationRevokeFailed,
        RecordType::Fallback,
        RecordType::RevokeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Sent => "SENT",
            RecordType::SendFailed => "SEND_FAILED",
            RecordType::RevokeRequested => "REVOKE_REQUESTED",
            RecordType::Delivered => "DELIVERED",
            RecordType::Read => "READ",
            RecordType::TtlExpirationRevoked => "TTL_EXPIRATION_REVOKED",
            RecordType::TtlExpirationRevokeFailed => "TTL_EXPIRATION_REVOKE_FAILED",
            RecordType::Fallback => "FALLBACK",
            RecordType::RevokeFailed => "REVOKE_FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The status this record alone stands for.
    pub fn status(self) -> Status {
        match self {
            RecordType::Read => Status::Read,
            RecordType::Delivered => Status::Delivered,
            RecordType::TtlExpirationRevoked | RecordType::RevokeRequested => Status::Revoked,
            RecordType::TtlExpirationRevokeFailed => Status::Expired,
            RecordType::Sent => Status::Sent,
            RecordType::SendFailed => Status::Failed,
            RecordType::Fallback => Status::Fallback,
            RecordType::RevokeFailed => Status::RevokeFailed,
        }
    }
}

impl Status {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Failed => "FAILED",
            Status::Sent => "SENT",
            Status::RevokeFailed => "REVOKE_FAILED",
            Status::Expired => "EXPIRED",
            Status::Revoked => "REVOKED",
            Status::Fallback => "FALLBACK",
            Status::Delivered => "DELIVERED",
            Status::Read => "READ",
        }
    }
}

/// The status of a set of records; `None` for the empty set. Order and repetition are
/// irrelevant by construction (a max over a set).
pub fn project(types: impl IntoIterator<Item = RecordType>) -> Option<Status> {
    types.into_iter().map(RecordType::status).max()
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Webhook,
    Api,
    /// Decided by rbm-edge itself (a fallback, a revoke given up on).
    System,
}

/// What is stored as the KV **metadata** of one record (≤ 1024 bytes, returned by `list`, so
/// the status view is one list call with no per-key reads).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordMeta {
    /// When it happened: RBM's `sendTime` for webhook events, our clock for API events.
    pub at: String,
    /// When rbm-edge recorded it (our clock).
    pub received_at: String,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// RBM's HTTP status on SEND_FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// On FALLBACK: why, and what became of the SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackInfo>,
}

/// What a status view says of a fallback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FallbackInfo {
    /// `NOT_REACHABLE`, `DEADLINE` or `TTL_EXPIRED`.
    pub reason: String,
    pub at: String,
    pub sms: SmsOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsOutcome {
    /// `PENDING`, `SENT`, `FAILED` or `NOT_CONFIGURED`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Longest string field kept in metadata (keeps a record well under KV's 1024-byte limit).
pub const MAX_META_FIELD: usize = 200;

// Read by hand from a JSON value (KV metadata, the conversation object's SQL): a derived
// `Deserialize` per type costs the wasm more than these few lines.
fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(String::from)
}

impl SmsOutcome {
    pub fn from_value(v: &Value) -> Option<SmsOutcome> {
        Some(SmsOutcome { status: text(v, "status")?, sid: text(v, "sid"), error: text(v, "error") })
    }
}

impl FallbackInfo {
    pub fn from_value(v: &Value) -> Option<FallbackInfo> {
        Some(FallbackInfo {
            reason: text(v, "reason")?,
            at: text(v, "at")?,
            sms: SmsOutcome::from_value(v.get("sms")?)?,
        })
    }
}

impl RecordMeta {
    /// A record's metadata as written by its `Serialize`; `None` when a required field is
    /// missing or of another type.
    pub fn from_value(v: &Value) -> Option<RecordMeta> {
        Some(RecordMeta {
            at: text(v, "at")?,
            received_at: text(v, "receivedAt")?,
            source: match v.get("source")?.as_str()? {
                "webhook" => Source::Webhook,
                "api" => Source::Api,
                "system" => Source::System,
                _ => return None,
            },
            event_id: text(v, "eventId"),
            phone_number: text(v, "phoneNumber"),
            agent_id: text(v, "agentId"),
            http_status: v.get("httpStatus").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()),
            fallback: v.get("fallback").and_then(FallbackInfo::from_value),
        })
    }

    /// The same from JSON text.
    pub fn from_json(text: &str) -> Option<RecordMeta> {
        RecordMeta::from_value(&serde_json::from_str(text).ok()?)
    }
    /// The record of a webhook event received at `received_at_ms`: `at` is RBM's `sendTime`
    /// when it is a valid timestamp, else the receive time. Bounded to fit KV's metadata.
    pub fn from_event(event: &RbmEvent, received_at_ms: u64) -> RecordMeta {
        let received_at = format_rfc3339_millis(received_at_ms);
        let at = event
            .send_time()
            .filter(|s| parse_rfc3339_nanos(s).is_some())
            .map(String::from)
            .unwrap_or_else(|| received_at.clone());
        RecordMeta {
            at,
            received_at,
            source: Source::Webhook,
            event_id: event.event_id().map(String::from),
            phone_number: event.phone_number().map(String::from),
            agent_id: event.agent_id().map(String::from),
            http_status: None,
            fallback: None,
        }
        .bounded()
    }

    /// Drops optional fields too long to store, so a hostile or odd value can never make the
    /// KV write fail (which would make RBM retry the event for 7 days).
    pub fn bounded(mut self) -> RecordMeta {
        // Field lengths are measured as serialised JSON: escapes (`\"`, `\u0000`) can make a
        // short string six times longer in the metadata.
        let json_len = super::json::str_len;
        for f in [&mut self.event_id, &mut self.phone_number, &mut self.agent_id] {
            if f.as_deref().is_some_and(|s| json_len(s) > MAX_META_FIELD) {
                *f = None;
            }
        }
        if let Some(fb) = &mut self.fallback {
            for f in [&mut fb.sms.sid, &mut fb.sms.error] {
                if f.as_deref().is_some_and(|s| json_len(s) > MAX_META_FIELD) {
                    *f = f.as_deref().map(|s| s.chars().take(MAX_META_FIELD / 6).collect());
                }
            }
        }
        if json_len(&self.at) > 64 {
            self.at = self.received_at.clone();
        }
        self
    }
}

/// The KV key prefix of a message's records (the id must already be validated).
pub fn key_prefix(message_id: &str) -> String {
    format!("msg:{message_id}:")
}

pub fn key(message_id: &str, t: RecordType) -> String {
    format!("msg:{message_id}:{}", t.as_str())
}

/// The record type of a key under `prefix`; `None` for keys of no type we know.
pub fn type_of_key(key: &str, prefix: &str) -> Option<RecordType> {
    key.strip_prefix(prefix).and_then(RecordType::parse)
}

/// One event in the status view (who sent it and to whom is on the view itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub kind: RecordType,
    pub at: String,
    pub received_at: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

/// `GET /v1/messages/{id}`: the folded view of a message's records.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub message_id: String,
    pub phone_number: Option<String>,
    pub agent_id: Option<String>,
    pub status: Status,
    pub events: Vec<EventView>,
    pub updated_at: String,
    /// Present once the message fell back to SMS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackInfo>,
}

/// Folds a message's records into its view; `None` when there are none.
/// Events are sorted by when they happened (numerically: RBM's timestamps mix precisions),
/// then by type; phone number and agent come from the API's own record first, else any.
pub fn fold(message_id: &str, mut records: Vec<(RecordType, RecordMeta)>) -> Option<StatusView> {
    let status = project(records.iter().map(|(t, _)| *t))?;
    let instant = |m: &RecordMeta| parse_rfc3339_nanos(&m.at).or_else(|| parse_rfc3339_nanos(&m.received_at));
    let before = |(ta, a): &(RecordType, RecordMeta), (tb, b): &(RecordType, RecordMeta)| {
        instant(a).cmp(&instant(b)).then(ta.cmp(tb)).is_lt()
    };
    // A stable insertion sort: a message has a handful of records (one per type), and
    // `sort_by` would bring the standard library's driftsort into the wasm for them.
    for i in 1..records.len() {
        let mut j = i;
        while j > 0 && before(&records[j], &records[j - 1]) {
            records.swap(j, j - 1);
            j -= 1;
        }
    }
    let pick = |f: fn(&RecordMeta) -> Option<&String>| -> Option<String> {
        let api = records.iter().filter(|(_, m)| m.source == Source::Api).find_map(|(_, m)| f(m));
        api.or_else(|| records.iter().find_map(|(_, m)| f(m))).cloned()
    };
    let phone_number = pick(|m| m.phone_number.as_ref());
    let agent_id = pick(|m| m.agent_id.as_ref());
    let fallback =
        records.iter().find_map(|(t, m)| m.fallback.clone().filter(|_| *t == RecordType::Fallback));
    let updated_at = records
        .iter()
        .max_by_key(|(_, m)| parse_rfc3339_nanos(&m.received_at))
        .map(|(_, m)| m.received_at.clone())
        .unwrap_or_default();
    let events = records
        .into_iter()
        .map(|(kind, m)| EventView {
            kind,
            at: m.at,
            received_at: m.received_at,
            source: m.source,
            event_id: m.event_id,
            http_status: m.http_status,
        })
        .collect();
    Some(StatusView {
        message_id: message_id.to_string(),
        phone_number,
        agent_id,
        status,
        events,
        updated_at,
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecordType::*;

    fn meta(at: &str, source: Source) -> RecordMeta {
        RecordMeta {
            at: at.into(),
            received_at: at.into(),
            source,
            event_id: None,
            phone_number: None,
            agent_id: None,
            http_status: None,
            fallback: None,
        }
    }

    #[test]
    fn metadata_round_trips_by_hand() {
        let mut m = meta("2026-01-01T00:00:00Z", Source::System);
        m.event_id = Some("e".into());
        m.http_status = Some(404);
        m.fallback = Some(FallbackInfo {
            reason: "DEADLINE".into(),
            at: "t".into(),
            sms: SmsOutcome { status: "SENT".into(), sid: Some("SM1".into()), error: None },
        });
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(RecordMeta::from_json(&json), Some(m));
        assert_eq!(RecordMeta::from_json(r#"{"at":"t","receivedAt":"t","source":"elsewhere"}"#), None);
        assert_eq!(RecordMeta::from_json(r#"{"at":"t","source":"api"}"#), None);
    }

    #[test]
    fn status_names_match_their_serialization() {
        for s in [
            Status::Failed,
            Status::Sent,
            Status::RevokeFailed,
            Status::Expired,
            Status::Revoked,
            Status::Fallback,
            Status::Delivered,
            Status::Read,
        ] {
            assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
        }
    }

    #[test]
    fn precedence_table() {
        let cases: &[(&[RecordType], Status)] = &[
            (&[Sent], Status::Sent),
            (&[SendFailed], Status::Failed),
            (&[SendFailed, Sent], Status::Sent),
            (&[Sent, Delivered], Status::Delivered),
            (&[Sent, Delivered, Read], Status::Read),
            (&[Read], Status::Read),
            (&[Sent, TtlExpirationRevoked], Status::Revoked),
            (&[Sent, RevokeRequested], Status::Revoked),
            (&[Sent, TtlExpirationRevokeFailed], Status::Expired),
            (&[TtlExpirationRevokeFailed, TtlExpirationRevoked], Status::Revoked),
            // DELIVERED wins over TTL notices and over our own revoke request.
            (&[Sent, TtlExpirationRevoked, Delivered], Status::Delivered),
            (&[TtlExpirationRevokeFailed, Delivered], Status::Delivered),
            (&[RevokeRequested, Delivered], Status::Delivered),
            (&[RevokeRequested, Read], Status::Read),
        ];
        for (set, want) in cases {
            assert_eq!(project(set.iter().copied()), Some(*want), "{set:?}");
        }
        assert_eq!(project([]), None);
    }

    /// Every permutation of every subset, each with every element possibly duplicated,
    /// projects to the same status as the set: order and repetition never matter.
    #[test]
    fn projection_is_order_and_duplicate_independent() {
        fn permutations(items: &[RecordType]) -> Vec<Vec<RecordType>> {
            if items.len() <= 1 {
                return vec![items.to_vec()];
            }
            let mut out = Vec::new();
            for i in 0..items.len() {
                let mut rest = items.to_vec();
                let x = rest.remove(i);
                for mut p in permutations(&rest) {
                    p.insert(0, x);
                    out.push(p);
                }
            }
            out
        }
        let all = RecordType::ALL;
        let mut checked = 0;
        for mask in 1u32..(1 << all.len()) {
            let set: Vec<RecordType> =
                all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| *t).collect();
            let want = set.iter().map(|t| t.status()).max();
            if set.len() > 5 {
                // 6! and 7! permutations are many; rotations and reversals cover order there.
                for r in 0..set.len() {
                    let mut s = set.clone();
                    s.rotate_left(r);
                    assert_eq!(project(s.iter().copied()), want);
                    s.reverse();
                    assert_eq!(project(s.iter().copied()), want);
                }
                continue;
            }
            for p in permutations(&set) {
                assert_eq!(project(p.iter().copied()), want);
                let doubled: Vec<RecordType> = p.iter().flat_map(|t| [*t, *t]).collect();
                assert_eq!(project(doubled), want);
                let mut dup_first = p.clone();
                dup_first.extend(p.iter().take(1));
                assert_eq!(project(dup_first), want);
                checked += 1;
            }
        }
        assert!(checked > 1000, "checked {checked}");
    }

    #[test]
    fn keys_round_trip() {
        let p = key_prefix("abc");
        for t in RecordType::ALL {
            assert_eq!(type_of_key(&key("abc", t), &p), Some(t));
        }
        assert_eq!(type_of_key("msg:abc:BOGUS", &p), None);
        assert_eq!(type_of_key("msg:abcd:READ", &p), None);
    }

    #[test]
    fn fold_sorts_numerically_and_prefers_api_fields() {
        let mut sent = meta("2018-12-31T15:01:23Z", Source::Api);
        sent.phone_number = Some("+1api".into());
        sent.agent_id = Some("agent".into());
        let mut read = meta("2018-12-31T15:01:23.5Z", Source::Webhook);
        read.phone_number = Some("+1hook".into());
        read.event_id = Some("E2".into());
        let delivered = meta("2018-12-31T15:01:23.000000001Z", Source::Webhook);
        let v = fold("m1", vec![(Read, read), (Sent, sent), (Delivered, delivered)]).expect("view");
        assert_eq!(v.status, Status::Read);
        assert_eq!(v.events.iter().map(|e| e.kind).collect::<Vec<_>>(), [Sent, Delivered, Read]);
        assert_eq!(v.phone_number.as_deref(), Some("+1api"));
        assert_eq!(v.agent_id.as_deref(), Some("agent"));
        assert_eq!(v.updated_at, "2018-12-31T15:01:23.5Z");
        let json = serde_json::to_value(&v).expect("json");
        assert_eq!(json["events"][2]["type"], "READ");
        assert_eq!(json["events"][2]["eventId"], "E2");
        assert_eq!(json["events"][2]["source"], "webhook");
        assert!(json["events"][0].get("eventId").is_none());
        assert!(fold("m", vec![]).is_none());
    }

    #[test]
    fn metadata_from_events() {
        let d = crate::core::event::Decoded::from_bytes(
            br#"{"senderPhoneNumber":"+12223334444","agentId":"A","messageId":"m","eventId":"E","sendTime":"2018-12-31T15:01:23.045123456Z","eventType":"READ"}"#.to_vec(),
        )
        .expect("decodes");
        let m = RecordMeta::from_event(&d.event, 1_546_268_484_000);
        assert_eq!(m.at, "2018-12-31T15:01:23.045123456Z");
        assert_eq!(m.received_at, "2018-12-31T15:01:24.000Z");
        assert_eq!(
            (m.event_id.as_deref(), m.phone_number.as_deref(), m.agent_id.as_deref()),
            (Some("E"), Some("+12223334444"), Some("A"))
        );
        let bad_time = crate::core::event::Decoded::from_bytes(
            br#"{"senderPhoneNumber":"+1","messageId":"m","sendTime":"yesterday","eventType":"READ"}"#
                .to_vec(),
        )
        .expect("decodes");
        assert_eq!(RecordMeta::from_event(&bad_time.event, 0).at, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn metadata_stays_small() {
        let mut m = meta("2018-12-31T15:01:23.045123456Z", Source::Webhook);
        m.event_id = Some("e".repeat(5000));
        m.phone_number = Some("+12223334444".into());
        m.agent_id = Some("a".repeat(MAX_META_FIELD - 2)); // + 2 quotes = the limit
        let m = m.bounded();
        assert_eq!(m.event_id, None);
        assert!(m.agent_id.is_some());
        assert!(serde_json::to_string(&m).expect("json").len() < 1024);
    }
}
