//! Validation of the relay's request bodies before anything is sent to Google.
//!
//! `POST /v1/messages` carries an RBM `AgentMessage` (relayed verbatim to
//! `phones.agentMessages.create`) plus four fields of our own: `phoneNumber`, `messageId`,
//! `agentId` and `statusCallback`. `POST /v1/phones/{phone}/events` carries an agent event
//! (`READ` or `IS_TYPING`) for `phones.agentEvents.create`.
//!
//! The limits come from Google's RCS for Business (RBM) documentation (the "Send messages"
//! guide and the REST reference of `AgentMessage`, `AgentContentMessage`, `RichCard`,
//! `CardContent`, `Media`, `ContentInfo`, `Suggestion`): a whole message ≤ 250 KB, text
//! ≤ 3072 characters, exactly one content kind, ≤ 11 suggestions per message and ≤ 4 per card,
//! suggestion text ≤ 25 characters, postback data and URLs ≤ 2048, card title ≤ 200 and
//! description ≤ 2000, carousels of 2 to 10 cards, at most one of `ttl` (≤ 15 days) or
//! `expireTime`. Catching these here gives the caller a precise JSON path instead of Google's
//! generic `400 INVALID_ARGUMENT`, and spends no quota.
//!
//! Deliberate leniencies: unknown fields are tolerated and relayed untouched (Google adds
//! fields over time); any `*Action` key is accepted as a suggested-action kind; `null` counts
//! as an absent field (as in proto3 JSON); `forceRefresh` may also be the string `"true"` or
//! `"false"` (Google's own rich-card example sends `"false"`, and its JSON parser accepts it);
//! timestamps may carry any UTC offset, as `google.protobuf.Timestamp` allows.
//!
//! Lengths are counted in Unicode scalar values (Rust `char`s), not bytes. Every check returns
//! the first error found, never panics, and echoes no field values back.

use serde_json::{Map, Value};
use std::fmt;

use super::ids::{is_agent_id, is_e164, is_uuid, MAX_AGENT_ID_CHARS};
use super::time::{duration_nanos, is_rfc3339_utc, NANOS_PER_SEC};

/// Largest accepted request body: RBM's limit for a whole stringified `AgentMessage`.
pub const MAX_BODY_BYTES: usize = 250 * 1024;

const MAX_TEXT_CHARS: usize = 3072;
const MAX_SUGGESTION_TEXT_CHARS: usize = 25;
const MAX_POSTBACK_CHARS: usize = 2048;
const MAX_URL_CHARS: usize = 2048;
const MAX_TITLE_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_MESSAGE_SUGGESTIONS: usize = 11;
const MAX_CARD_SUGGESTIONS: usize = 4;
const MIN_CAROUSEL_CARDS: usize = 2;
const MAX_CAROUSEL_CARDS: usize = 10;
const MAX_EVENT_MESSAGE_ID_CHARS: usize = 256;
/// 15 days, RBM's longest `ttl`.
const MAX_TTL_NANOS: i128 = 15 * 24 * 3600 * NANOS_PER_SEC;

const CONTENT_KINDS: &[&str] = &["text", "richCard", "contentInfo", "uploadedRbmFile"];
const TRAFFIC_TYPES: &[&str] = &[
    "AUTHENTICATION",
    "TRANSACTION",
    "PROMOTION",
    "SERVICEREQUEST",
    "ACKNOWLEDGEMENT",
    "MESSAGE_TRAFFIC_TYPE_UNSPECIFIED",
];
const ACTION_KINDS: &str = "dialAction, viewLocationAction, createCalendarEventAction, \
                            openUrlAction, shareLocationAction, composeAction";

/// Why a body was refused: where (a JSON path such as `contentMessage.suggestions[3].reply.text`,
/// empty for the whole body) and what is wrong, as a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    /// `{path}: {message}`, or just the message when it is about the whole body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

/// A valid `POST /v1/messages` body, split into our fields and the `AgentMessage` to relay.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// E.164.
    pub phone_number: String,
    /// A UUID when given.
    pub message_id: Option<String>,
    pub agent_id: Option<String>,
    pub status_callback: Option<String>,
    /// SMS fallback, when asked for.
    pub fallback: Option<FallbackSpec>,
    /// The body minus `phoneNumber`, `messageId`, `agentId`, `statusCallback`, `fallback`:
    /// relayed verbatim.
    pub agent_message: Map<String, Value>,
    /// `agent_message` as the JSON text sent to RBM (serialised once, here, where its size is
    /// checked: re-serialising can lengthen numbers, `1e9` → `1e+9`).
    pub relayed_json: String,
}

/// A valid `POST /v1/phones/{phone}/events` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEventRequest {
    Read { message_id: String },
    IsTyping,
}

/// `"fallback": {"afterSeconds": N, "sms": {"text": "…"}}` of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSpec {
    /// The deadline after the send; `None` when the message's TTL is the deadline.
    pub after_seconds: Option<u64>,
    /// The SMS: `sms.text`, else the message's own text.
    pub sms_text: String,
}

/// Shortest and longest fallback deadline: RBM keeps undelivered messages 30 days.
pub const MIN_FALLBACK_SECS: u64 = 5;
pub const MAX_FALLBACK_SECS: u64 = 2_592_000;
/// Longest SMS text (Twilio concatenates up to 1600 characters).
pub const MAX_SMS_CHARS: usize = 1600;

type Obj = Map<String, Value>;
type Checked<T> = Result<T, ValidationError>;

fn error(path: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { path: path.to_owned(), message: message.into() }
}

fn fail<T>(path: &str, message: impl Into<String>) -> Checked<T> {
    Err(error(path, message))
}

// ---- paths ------------------------------------------------------------------------------

/// `base.key` (just `key` at the top level).
fn at(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[i]`.
fn at_index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

// ---- typed access -----------------------------------------------------------------------

fn as_str<'a>(v: &'a Value, path: &str) -> Checked<&'a str> {
    v.as_str().ok_or_else(|| error(path, "must be a string"))
}

fn as_obj<'a>(v: &'a Value, path: &str) -> Checked<&'a Obj> {
    v.as_object().ok_or_else(|| error(path, "must be an object"))
}

fn as_arr<'a>(v: &'a Value, path: &str) -> Checked<&'a [Value]> {
    v.as_array().map(Vec::as_slice).ok_or_else(|| error(path, "must be an array"))
}

/// A boolean, or the strings `"true"` / `"false"` that Google's examples and parser use.
fn as_lenient_bool(v: &Value, path: &str) -> Checked<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => fail(path, "must be a boolean"),
    }
}

/// The field `key` of `obj`, converted; `None` when absent or `null`.
fn opt<'a, T>(
    obj: &'a Obj,
    base: &str,
    key: &str,
    convert: impl Fn(&'a Value, &str) -> Checked<T>,
) -> Checked<Option<T>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => convert(v, &at(base, key)).map(Some),
    }
}

/// Like [`opt`], but absence is an error.
fn req<'a, T>(
    obj: &'a Obj,
    base: &str,
    key: &str,
    convert: impl Fn(&'a Value, &str) -> Checked<T>,
) -> Checked<T> {
    opt(obj, base, key, convert)?.ok_or_else(|| error(&at(base, key), "is required"))
}

/// The one key of `obj` (non-null) that is a kind of `what`; an error naming them otherwise.
fn one_matching<'a>(
    obj: &'a Obj,
    path: &str,
    what: &str,
    is_kind: impl Fn(&str) -> bool,
) -> Checked<(&'a str, &'a Value)> {
    let found: Vec<(&str, &Value)> =
        obj.iter().filter(|(k, v)| !v.is_null() && is_kind(k)).map(|(k, v)| (k.as_str(), v)).collect();
    // Listed in key order (the same message whatever order the body had): serde_json's map is
    // a BTreeMap here (no `preserve_order`), so no sort is needed.
    match found.as_slice() {
        [one] => Ok(*one),
        [] => fail(path, format!("must contain exactly one of {what} (found none)")),
        several => {
            let names: Vec<&str> = several.iter().map(|(k, _)| *k).collect();
            let names = names.join(", ");
            fail(path, format!("must contain exactly one of {what} (found {names})"))
        }
    }
}

fn one_of<'a>(obj: &'a Obj, path: &str, kinds: &[&str]) -> Checked<(&'a str, &'a Value)> {
    one_matching(obj, path, &kinds.join(", "), |k| kinds.contains(&k))
}

// ---- leaf checks ------------------------------------------------------------------------

fn check_chars(path: &str, s: &str, min: usize, max: usize) -> Checked<()> {
    let n = s.chars().count();
    if n < min {
        if min == 1 {
            return fail(path, "must not be empty");
        }
        return fail(path, format!("must be at least {min} characters (got {n})"));
    }
    if n > max {
        return fail(path, format!("must be at most {max} characters (got {n})"));
    }
    Ok(())
}

fn check_count(path: &str, n: usize, min: usize, max: usize, what: &str) -> Checked<()> {
    if n < min {
        return fail(path, format!("must have at least {min} {what} (got {n})"));
    }
    if n > max {
        return fail(path, format!("must have at most {max} {what} (got {n})"));
    }
    Ok(())
}

fn check_one_of(path: &str, s: &str, allowed: &[&str]) -> Checked<()> {
    if allowed.contains(&s) {
        Ok(())
    } else {
        fail(path, format!("must be one of {}", allowed.join(", ")))
    }
}

fn check_phone(path: &str, s: &str) -> Checked<()> {
    if is_e164(s) {
        Ok(())
    } else {
        fail(path, "must be an E.164 phone number: + then 8 to 15 digits, like +12223334444")
    }
}

/// An absolute `http://` or `https://` URL of at most 2048 characters.
fn check_url(path: &str, s: &str) -> Checked<()> {
    check_chars(path, s, 1, MAX_URL_CHARS)?;
    match http_url_host(s) {
        Some(_) => Ok(()),
        None => fail(path, "must be an absolute http(s) URL"),
    }
}

fn check_timestamp(path: &str, s: &str) -> Checked<()> {
    if is_rfc3339_utc(s) {
        Ok(())
    } else {
        fail(path, "must be an RFC 3339 timestamp like 2026-11-25T10:00:00Z")
    }
}

/// Case-insensitive `strip_prefix` for an ASCII prefix.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// For a well-formed absolute http(s) URL: whether it is https, and its host (without port;
/// IPv6 hosts keep their brackets). No whitespace or control characters anywhere, no
/// credentials (`user@`), a non-empty host, a numeric port ≤ 65535 if any.
fn http_url_host(s: &str) -> Option<(bool, &str)> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (https, rest) = match strip_prefix_ignore_case(s, "https://") {
        Some(rest) => (true, rest),
        None => (false, strip_prefix_ignore_case(s, "http://")?),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains(['@', '\\']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        let inner = host.get(1..end).unwrap_or_default();
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() || host.contains(['[', ']']) {
            return None;
        }
        (host, port)
    };
    if let Some(port) = port {
        let valid = (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65_535);
        if !valid {
            return None;
        }
    }
    Some((https, host))
}

/// `https://` anywhere, or `http://` to a loopback host (for tests).
fn check_status_callback(path: &str, s: &str) -> Checked<()> {
    check_chars(path, s, 1, MAX_URL_CHARS)?;
    match http_url_host(s) {
        Some((true, _)) => Ok(()),
        Some((false, host))
            if ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| host.eq_ignore_ascii_case(h)) =>
        {
            Ok(())
        }
        _ => fail(path, "must be an https URL (plain http only to 127.0.0.1, localhost or [::1])"),
    }
}

// ---- the AgentMessage -------------------------------------------------------------------

fn parse_object(body: &[u8]) -> Checked<Obj> {
    if body.len() > MAX_BODY_BYTES {
        return fail("", format!("must be at most {MAX_BODY_BYTES} bytes (got {})", body.len()));
    }
    match super::json::parse(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => fail("", "must be a JSON object"),
        Err(e) => fail("", format!("must be valid JSON ({e})")),
    }
}

/// Remove one of our own string fields from the body.
/// Takes `fallback` out of a send body (it is ours, not RBM's) and checks it against the rest.
fn take_fallback(body: &mut Obj) -> Checked<Option<FallbackSpec>> {
    let spec = match body.remove("fallback") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return fail("fallback", "must be an object like {\"afterSeconds\":300,\"sms\":{\"text\":\"…\"}}")
        }
    };
    let after_seconds = match spec.get("afterSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (MIN_FALLBACK_SECS..=MAX_FALLBACK_SECS).contains(&n) => Some(n),
            _ => {
                return fail(
                    "fallback.afterSeconds",
                    format!("must be a whole number from {MIN_FALLBACK_SECS} to {MAX_FALLBACK_SECS}"),
                )
            }
        },
    };
    let has_ttl = ["ttl", "expireTime"].iter().any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    if after_seconds.is_none() && !has_ttl {
        return fail("fallback.afterSeconds", "is required unless the message has ttl or expireTime");
    }
    let given = match spec.get("sms") {
        None | Some(Value::Null) => None,
        Some(Value::Object(sms)) => match sms.get("text") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return fail("fallback.sms.text", "must be a string"),
        },
        Some(_) => return fail("fallback.sms", "must be an object like {\"text\":\"…\"}"),
    };
    let own_text = body.get("contentMessage").and_then(|c| c.get("text")).and_then(Value::as_str);
    let Some(sms_text) = given.or_else(|| own_text.map(String::from)) else {
        return fail("fallback.sms.text", "is required when the message has no text (a rich card or media)");
    };
    check_chars("fallback.sms.text", &sms_text, 1, MAX_SMS_CHARS)?;
    Ok(Some(FallbackSpec { after_seconds, sms_text }))
}

fn take_str(body: &mut Obj, key: &str) -> Checked<Option<String>> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => fail(key, "must be a string"),
    }
}

fn check_content_info(info: &Obj, path: &str) -> Checked<()> {
    check_url(&at(path, "fileUrl"), req(info, path, "fileUrl", as_str)?)?;
    if let Some(url) = opt(info, path, "thumbnailUrl", as_str)? {
        check_url(&at(path, "thumbnailUrl"), url)?;
    }
    opt(info, path, "forceRefresh", as_lenient_bool)?;
    check_content_description(info, path)
}

/// `contentDescription` on `contentInfo` and `uploadedRbmFile` (AgentMessage reference, 2025):
/// the text screen readers speak for the media. The reference gives no limit; RBM judges the
/// length, we only check the type.
fn check_content_description(file: &Obj, path: &str) -> Checked<()> {
    opt(file, path, "contentDescription", as_str)?;
    Ok(())
}

fn check_uploaded_file(file: &Obj, path: &str) -> Checked<()> {
    check_chars(&at(path, "fileName"), req(file, path, "fileName", as_str)?, 1, usize::MAX)?;
    opt(file, path, "thumbnailName", as_str)?;
    check_content_description(file, path)
}

/// `contentInfo` or `uploadedRbmFile`, named by `kind`, at `path`.
fn check_file(kind: &str, value: &Value, path: &str) -> Checked<()> {
    let file = as_obj(value, path)?;
    if kind == "contentInfo" {
        check_content_info(file, path)
    } else {
        check_uploaded_file(file, path)
    }
}

fn check_action(action: &Obj, path: &str) -> Checked<()> {
    if let Some(url) = opt(action, path, "fallbackUrl", as_str)? {
        check_url(&at(path, "fallbackUrl"), url)?;
    }
    let what = format!("{ACTION_KINDS} (or another *Action)");
    let (kind, value) = one_matching(action, path, &what, |k| k.ends_with("Action"))?;
    let p = at(path, kind);
    let detail = as_obj(value, &p)?;
    match kind {
        "dialAction" => check_phone(&at(&p, "phoneNumber"), req(detail, &p, "phoneNumber", as_str)?),
        "openUrlAction" => check_url(&at(&p, "url"), req(detail, &p, "url", as_str)?),
        "viewLocationAction" => {
            opt(detail, &p, "latLong", as_obj)?;
            opt(detail, &p, "label", as_str)?;
            opt(detail, &p, "query", as_str)?;
            Ok(())
        }
        "createCalendarEventAction" => {
            for key in ["startTime", "endTime"] {
                if let Some(t) = opt(detail, &p, key, as_str)? {
                    check_timestamp(&at(&p, key), t)?;
                }
            }
            opt(detail, &p, "title", as_str)?;
            opt(detail, &p, "description", as_str)?;
            Ok(())
        }
        "composeAction" => {
            for key in ["composeTextMessage", "composeRecordingMessage"] {
                if let Some(compose) = opt(detail, &p, key, as_obj)? {
                    let cp = at(&p, key);
                    check_phone(&at(&cp, "phoneNumber"), req(compose, &cp, "phoneNumber", as_str)?)?;
                }
            }
            Ok(())
        }
        _ => Ok(()), // shareLocationAction ({}) and kinds Google adds later
    }
}

fn check_suggestion(suggestion: &Obj, path: &str) -> Checked<()> {
    let (kind, value) = one_of(suggestion, path, &["reply", "action"])?;
    let p = at(path, kind);
    let chip = as_obj(value, &p)?;
    let text = req(chip, &p, "text", as_str)?;
    check_chars(&at(&p, "text"), text, 1, MAX_SUGGESTION_TEXT_CHARS)?;
    let postback = req(chip, &p, "postbackData", as_str)?;
    check_chars(&at(&p, "postbackData"), postback, 1, MAX_POSTBACK_CHARS)?;
    if kind == "action" {
        check_action(chip, &p)?;
    }
    Ok(())
}

/// The optional `suggestions` array of `parent` (a content message or a card).
fn check_suggestions(parent: &Obj, path: &str, max: usize) -> Checked<()> {
    let Some(list) = opt(parent, path, "suggestions", as_arr)? else {
        return Ok(());
    };
    let p = at(path, "suggestions");
    check_count(&p, list.len(), 0, max, "suggestions")?;
    for (i, item) in list.iter().enumerate() {
        let ip = at_index(&p, i);
        check_suggestion(as_obj(item, &ip)?, &ip)?;
    }
    Ok(())
}

fn check_media(media: &Obj, path: &str) -> Checked<()> {
    if let Some(height) = opt(media, path, "height", as_str)? {
        check_one_of(&at(path, "height"), height, &["SHORT", "MEDIUM", "TALL"])?;
    }
    let (kind, value) = one_of(media, path, &["contentInfo", "uploadedRbmFile"])?;
    check_file(kind, value, &at(path, kind))
}

fn check_card_content(card: &Obj, path: &str) -> Checked<()> {
    let title = opt(card, path, "title", as_str)?;
    if let Some(t) = title {
        check_chars(&at(path, "title"), t, 0, MAX_TITLE_CHARS)?;
    }
    let description = opt(card, path, "description", as_str)?;
    if let Some(d) = description {
        check_chars(&at(path, "description"), d, 0, MAX_DESCRIPTION_CHARS)?;
    }
    let media = opt(card, path, "media", as_obj)?;
    if let Some(m) = media {
        check_media(m, &at(path, "media"))?;
    }
    if title.is_none_or(str::is_empty) && description.is_none_or(str::is_empty) && media.is_none() {
        return fail(path, "must have at least one of title, description or media");
    }
    check_suggestions(card, path, MAX_CARD_SUGGESTIONS)
}

fn check_rich_card(rich: &Obj, path: &str) -> Checked<()> {
    let (kind, value) = one_of(rich, path, &["standaloneCard", "carouselCard"])?;
    let p = at(path, kind);
    let card = as_obj(value, &p)?;
    if kind == "standaloneCard" {
        let content = req(card, &p, "cardContent", as_obj)?;
        return check_card_content(content, &at(&p, "cardContent"));
    }
    if let Some(width) = opt(card, &p, "cardWidth", as_str)? {
        check_one_of(&at(&p, "cardWidth"), width, &["SMALL", "MEDIUM"])?;
    }
    let cards = req(card, &p, "cardContents", as_arr)?;
    let cp = at(&p, "cardContents");
    check_count(&cp, cards.len(), MIN_CAROUSEL_CARDS, MAX_CAROUSEL_CARDS, "cards")?;
    for (i, item) in cards.iter().enumerate() {
        let ip = at_index(&cp, i);
        check_card_content(as_obj(item, &ip)?, &ip)?;
    }
    Ok(())
}

fn check_content_message(content: &Obj, path: &str) -> Checked<()> {
    let (kind, value) = one_of(content, path, CONTENT_KINDS)?;
    let p = at(path, kind);
    match kind {
        "text" => check_chars(&p, as_str(value, &p)?, 1, MAX_TEXT_CHARS)?,
        "richCard" => check_rich_card(as_obj(value, &p)?, &p)?,
        _ => check_file(kind, value, &p)?,
    }
    check_suggestions(content, path, MAX_MESSAGE_SUGGESTIONS)
}

fn check_agent_message(message: &Obj) -> Checked<()> {
    let content = req(message, "", "contentMessage", as_obj)?;
    check_content_message(content, "contentMessage")?;
    if let Some(traffic) = opt(message, "", "messageTrafficType", as_str)? {
        check_one_of("messageTrafficType", traffic, TRAFFIC_TYPES)?;
    }
    let ttl = opt(message, "", "ttl", as_str)?;
    let expire_time = opt(message, "", "expireTime", as_str)?;
    if ttl.is_some() && expire_time.is_some() {
        return fail("ttl", "must not be set together with expireTime (set at most one)");
    }
    if let Some(ttl) = ttl {
        match duration_nanos(ttl) {
            None => return fail("ttl", "must be a duration in seconds like \"3600s\""),
            Some(n) if n <= 0 => return fail("ttl", "must be more than 0s"),
            Some(n) if n > MAX_TTL_NANOS => return fail("ttl", "must be at most 1296000s (15 days)"),
            Some(_) => {}
        }
    }
    if let Some(t) = expire_time {
        check_timestamp("expireTime", t)?;
    }
    Ok(())
}

/// Validate a `POST /v1/messages` body and split off our own fields; the rest is the
/// `AgentMessage` to relay verbatim.
pub fn validate_send(body: &[u8]) -> Result<SendRequest, ValidationError> {
    let mut message = parse_object(body)?;

    let phone_number =
        take_str(&mut message, "phoneNumber")?.ok_or_else(|| error("phoneNumber", "is required"))?;
    check_phone("phoneNumber", &phone_number)?;

    let message_id = take_str(&mut message, "messageId")?;
    if message_id.as_deref().is_some_and(|id| !is_uuid(id)) {
        return fail("messageId", "must be a UUID like 123e4567-e89b-12d3-a456-426614174000");
    }

    let agent_id = take_str(&mut message, "agentId")?;
    if let Some(id) = &agent_id {
        check_chars("agentId", id, 1, MAX_AGENT_ID_CHARS)?;
        if !is_agent_id(id) {
            return fail("agentId", "must contain only letters, digits, '_', '.' and '-'");
        }
    }

    let status_callback = take_str(&mut message, "statusCallback")?;
    if let Some(url) = &status_callback {
        check_status_callback("statusCallback", url)?;
    }

    let fallback = take_fallback(&mut message)?;
    check_agent_message(&message)?;
    let relayed_json =
        serde_json::to_string(&message).map_err(|_| error("", "the message cannot be serialised"))?;
    if relayed_json.len() > MAX_BODY_BYTES {
        return fail(
            "",
            format!(
                "the message to relay must be at most {MAX_BODY_BYTES} bytes (got {})",
                relayed_json.len()
            ),
        );
    }
    Ok(SendRequest {
        phone_number,
        message_id,
        agent_id,
        status_callback,
        fallback,
        agent_message: message,
        relayed_json,
    })
}

/// Validate a `POST /v1/phones/{phone}/events` body: `{"eventType":"READ","messageId":…}` or
/// `{"eventType":"IS_TYPING"}`.
pub fn validate_agent_event(body: &[u8]) -> Result<AgentEventRequest, ValidationError> {
    let event = parse_object(body)?;
    match req(&event, "", "eventType", as_str)? {
        "READ" => {
            let id = req(&event, "", "messageId", as_str)?;
            check_chars("messageId", id, 1, MAX_EVENT_MESSAGE_ID_CHARS)?;
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._~=+-".contains(&b);
            if !id.bytes().all(allowed) {
                return fail("messageId", "must contain only letters, digits and . _ ~ = + -");
            }
            Ok(AgentEventRequest::Read { message_id: id.to_owned() })
        }
        "IS_TYPING" => Ok(AgentEventRequest::IsTyping),
        _ => fail("eventType", "must be READ or IS_TYPING"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PHONE: &str = "+12223334444";
    const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

    /// `message` (an AgentMessage) plus our four fields, as request bytes.
    fn with_our_fields(message: &Value) -> Vec<u8> {
        let mut body = message.as_object().unwrap().clone();
        body.insert("phoneNumber".into(), json!(PHONE));
        body.insert("messageId".into(), json!(UUID));
        body.insert("agentId".into(), json!("my_agent_abc123_agent"));
        body.insert("statusCallback".into(), json!("https://example.com/rbm/status"));
        serde_json::to_vec(&body).unwrap()
    }

    /// Accepted, and the relayed map serializes exactly like `message`.
    fn assert_relayed(message_json: &str) {
        let message: Value = serde_json::from_str(message_json).unwrap();
        let req = validate_send(&with_our_fields(&message))
            .unwrap_or_else(|e| panic!("rejected: {e}\n{message_json}"));
        assert_eq!(req.phone_number, PHONE);
        assert_eq!(req.message_id.as_deref(), Some(UUID));
        assert_eq!(req.agent_id.as_deref(), Some("my_agent_abc123_agent"));
        assert_eq!(req.status_callback.as_deref(), Some("https://example.com/rbm/status"));
        let relayed = serde_json::to_vec(&Value::Object(req.agent_message)).unwrap();
        assert_eq!(relayed, serde_json::to_vec(&message).unwrap());
    }

    /// A body: `phoneNumber` plus the given AgentMessage fields.
    fn body(message: Value) -> Vec<u8> {
        let mut m = message.as_object().unwrap().clone();
        m.entry("phoneNumber").or_insert(json!(PHONE));
        serde_json::to_vec(&m).unwrap()
    }

    fn ok(message: Value) -> SendRequest {
        let bytes = body(message);
        validate_send(&bytes).unwrap_or_else(|e| panic!("rejected: {e}\n{}", String::from_utf8_lossy(&bytes)))
    }

    fn err(message: Value) -> ValidationError {
        validate_send(&body(message)).expect_err("should be rejected")
    }

    fn assert_err(message: Value, path: &str, words: &str) {
        let e = err(message);
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(words), "{e:?} lacks {words:?}");
    }

    fn text(t: &str) -> Value {
        json!({"contentMessage": {"text": t}})
    }

    fn reply(text: &str) -> Value {
        json!({"reply": {"text": text, "postbackData": "p"}})
    }

    fn with_suggestions(suggestions: Value) -> Value {
        json!({"contentMessage": {"text": "Hi", "suggestions": suggestions}})
    }

    fn action(kind: &str, detail: Value) -> Value {
        json!({"contentMessage": {"text": "Hi", "suggestions": [
            {"action": {"text": "Go", "postbackData": "go", kind: detail}}]}})
    }

    fn card(title: &str) -> Value {
        json!({"title": title})
    }

    fn carousel(cards: Vec<Value>) -> Value {
        json!({"contentMessage": {"richCard": {"carouselCard": {"cardWidth": "MEDIUM", "cardContents": cards}}}})
    }

    fn standalone(card_content: Value) -> Value {
        json!({"contentMessage": {"richCard": {"standaloneCard": {"cardContent": card_content}}}})
    }

    fn content_info(info: Value) -> Value {
        json!({"contentMessage": {"contentInfo": info}})
    }

    // ---- documented examples ----------------------------------------------------------

    #[test]
    fn protocol_sheet_example_is_relayed_verbatim() {
        assert_relayed(
            r#"{"contentMessage":{"text":"Hello, world!","suggestions":[{"reply":{"text":"Yes","postbackData":"yes"}}]},
                "messageTrafficType":"TRANSACTION","ttl":"86400s"}"#,
        );
    }

    #[test]
    fn google_text_with_suggested_replies_and_actions_is_relayed_verbatim() {
        assert_relayed(
            r#"{"contentMessage": {
                "text": "Hello, here are some suggested actions and replies.",
                "suggestions": [
                  {"reply": {"text": "Suggestion #1", "postbackData": "suggestion_1"}},
                  {"action": {"text": "Call", "postbackData": "postback_data_1234",
                              "fallbackUrl": "https://www.google.com/contact/",
                              "dialAction": {"phoneNumber": "+15556667777"}}},
                  {"action": {"text": "Open Google", "postbackData": "postback_data_1234",
                              "openUrlAction": {"url": "https://www.google.com"}}},
                  {"action": {"text": "Open in webview", "postbackData": "postback_data_1234",
                              "openUrlAction": {"url": "https://www.google.com", "application": "WEBVIEW",
                                                "webviewViewMode": "FULL", "description": "Accessibility text"}}},
                  {"action": {"text": "Share your location", "postbackData": "postback_data_1234",
                              "shareLocationAction": {}}},
                  {"action": {"text": "View map", "postbackData": "postback_data_1234",
                              "fallbackUrl": "https://www.google.com/maps/@37.4220188,-122.0844786,15z",
                              "viewLocationAction": {"latLong": {"latitude": 37.4220188, "longitude": -122.0844786},
                                                     "label": "Googleplex"}}},
                  {"action": {"text": "Find on map", "postbackData": "postback_data_1234",
                              "viewLocationAction": {"query": "Googleplex, Mountain View, CA"}}},
                  {"action": {"text": "Save to calendar", "postbackData": "postback_data_1234",
                              "fallbackUrl": "https://www.google.com/calendar",
                              "createCalendarEventAction": {"startTime": "2020-06-30T19:00:00Z",
                                  "endTime": "2020-06-30T20:00:00Z", "title": "My calendar event",
                                  "description": "Description of the calendar event"}}},
                  {"action": {"text": "Chat", "postbackData": "postback_data_1234",
                              "composeAction": {"composeTextMessage": {"phoneNumber": "+15556667777",
                                                                       "text": "Draft to go into the send message text field."}}}}
                ]}, "messageTrafficType": "PROMOTION"}"#,
        );
    }

    #[test]
    fn google_standalone_rich_card_is_relayed_verbatim() {
        assert_relayed(
            r#"{"contentMessage": {"richCard": {"standaloneCard": {
                "thumbnailImageAlignment": "RIGHT", "cardOrientation": "VERTICAL",
                "cardContent": {"title": "Hello, world!", "description": "RBM is awesome!",
                  "media": {"height": "TALL", "contentInfo": {
                    "fileUrl": "https://www.google.com/images/branding/googlelogo/2x/googlelogo_color_272x92dp.png",
                    "forceRefresh": "false"}},
                  "suggestions": [
                    {"reply": {"text": "Suggestion #1", "postbackData": "suggestion_1"}},
                    {"reply": {"text": "Suggestion #2", "postbackData": "suggestion_2"}}]}}}}}"#,
        );
    }

    #[test]
    fn google_carousel_of_two_cards_is_relayed_verbatim() {
        assert_relayed(
            r#"{"contentMessage": {"richCard": {"carouselCard": {"cardWidth": "MEDIUM", "cardContents": [
                {"title": "Card #1", "description": "The description for card #1",
                 "suggestions": [{"reply": {"text": "Card #1", "postbackData": "card_1"}}],
                 "media": {"height": "MEDIUM", "contentInfo": {"fileUrl": "https://example.com/a.png", "forceRefresh": false}}},
                {"title": "Card #2", "description": "The description for card #2",
                 "suggestions": [{"reply": {"text": "Card #2", "postbackData": "card_2"}}],
                 "media": {"height": "MEDIUM", "uploadedRbmFile": {"fileName": "files/abc", "thumbnailName": "files/def"}}}
              ]}}}, "messageTrafficType": "PROMOTION", "expireTime": "2026-11-25T10:00:00Z"}"#,
        );
    }

    #[test]
    fn google_media_and_uploaded_file_messages_are_relayed_verbatim() {
        assert_relayed(
            r#"{"contentMessage": {"contentInfo": {
                "fileUrl": "https://www.google.com/images/branding/googlelogo/2x/googlelogo_color_272x92dp.png",
                "thumbnailUrl": "https://example.com/thumb.png", "forceRefresh": "false"}}}"#,
        );
        assert_relayed(
            r#"{"contentMessage": {"uploadedRbmFile": {"fileName": "files/xyz123", "thumbnailName": "files/xyz124"},
                "suggestions": [{"reply": {"text": "Nice", "postbackData": "nice"}}]},
                "messageTrafficType": "TRANSACTION"}"#,
        );
    }

    #[test]
    fn unknown_fields_are_tolerated_and_relayed_untouched() {
        assert_relayed(
            r#"{"contentMessage": {"text": "Hi", "futureField": {"a": [1, 2.5, null, true]}},
                "richMessageClassification": {"useCaseType": "X"}, "somethingNew": 12345678901234567890,
                "messageTrafficType": "MESSAGE_TRAFFIC_TYPE_UNSPECIFIED"}"#,
        );
        // An unknown *Action kind is accepted, as long as it is the only one.
        ok(action("payAction", json!({"amount": "1"})));
    }

    #[test]
    fn only_phone_number_is_required_among_our_fields() {
        let req = ok(text("Hi"));
        assert_eq!(req.message_id, None);
        assert_eq!(req.agent_id, None);
        assert_eq!(req.status_callback, None);
        assert_eq!(Value::Object(req.agent_message), text("Hi"));
        // null means absent, and is not relayed either.
        let req = ok(json!({"contentMessage": {"text": "Hi"}, "messageId": null, "agentId": null}));
        assert_eq!(Value::Object(req.agent_message), text("Hi"));
    }

    // ---- the body -------------------------------------------------------------------------

    #[test]
    fn body_size_limit_is_inclusive() {
        let mut exact = body(text("Hi"));
        exact.resize(MAX_BODY_BYTES, b' ');
        assert!(validate_send(&exact).is_ok());
        exact.push(b' ');
        let e = validate_send(&exact).unwrap_err();
        assert_eq!(e.path, "");
        assert_eq!(e.message, format!("must be at most 256000 bytes (got 256001)"));
        assert_eq!(e.to_string(), e.message);
        let e = validate_agent_event(&exact).unwrap_err();
        assert_eq!(e.path, "");
    }

    #[test]
    fn body_must_be_a_json_object() {
        for bad in [&b""[..], b"{", b"[]", b"\"x\"", b"null", b"42", b"{} {}", b"{'a':1}"] {
            let e = validate_send(bad).unwrap_err();
            assert_eq!(e.path, "", "{}", String::from_utf8_lossy(bad));
            assert!(e.message.starts_with("must be"), "{e:?}");
        }
    }

    // ---- our fields ---------------------------------------------------------------------

    #[test]
    fn phone_number_is_required_and_e164() {
        let mut no_phone = text("Hi").as_object().unwrap().clone();
        no_phone.remove("phoneNumber");
        let e = validate_send(&serde_json::to_vec(&no_phone).unwrap()).unwrap_err();
        assert_eq!((e.path.as_str(), e.message.as_str()), ("phoneNumber", "is required"));
        assert_err(
            json!({"phoneNumber": 12223334444u64, "contentMessage": {"text": "Hi"}}),
            "phoneNumber",
            "must be a string",
        );
        assert_err(
            json!({"phoneNumber": "12223334444", "contentMessage": {"text": "Hi"}}),
            "phoneNumber",
            "E.164",
        );
        ok(json!({"phoneNumber": "+12345678", "contentMessage": {"text": "Hi"}}));
        ok(json!({"phoneNumber": "+123456789012345", "contentMessage": {"text": "Hi"}}));
        assert_err(
            json!({"phoneNumber": "+1234567", "contentMessage": {"text": "Hi"}}),
            "phoneNumber",
            "E.164",
        );
    }

    #[test]
    fn message_id_must_be_a_uuid() {
        ok(json!({"messageId": "123E4567-E89B-12D3-A456-426614174000", "contentMessage": {"text": "Hi"}}));
        assert_err(json!({"messageId": "not-a-uuid", "contentMessage": {"text": "Hi"}}), "messageId", "UUID");
        assert_err(
            json!({"messageId": 7, "contentMessage": {"text": "Hi"}}),
            "messageId",
            "must be a string",
        );
    }

    #[test]
    fn agent_id_charset_and_length() {
        let id = |s: &str| json!({"agentId": s, "contentMessage": {"text": "Hi"}});
        ok(id("my_agent_abc123_agent"));
        ok(id("a.b-c_D9"));
        ok(id(&"a".repeat(128)));
        assert_err(id(&"a".repeat(129)), "agentId", "at most 128 characters (got 129)");
        assert_err(id(""), "agentId", "must not be empty");
        assert_err(id("agent/../x"), "agentId", "only letters");
        assert_err(id("agent id"), "agentId", "only letters");
        assert_err(
            json!({"agentId": ["a"], "contentMessage": {"text": "Hi"}}),
            "agentId",
            "must be a string",
        );
    }

    #[test]
    fn status_callback_is_https_or_loopback_http() {
        let cb = |s: &str| json!({"statusCallback": s, "contentMessage": {"text": "Hi"}});
        for good in [
            "https://example.com/cb",
            "HTTPS://example.com:8443/cb?x=1#f",
            "http://127.0.0.1:8787/cb",
            "http://localhost/cb",
            "http://LOCALHOST:1234",
            "http://[::1]:8080/cb",
            "https://[2001:db8::1]/cb",
        ] {
            ok(cb(good));
        }
        for bad in [
            "http://example.com/cb",
            "http://127.0.0.2/cb",
            "http://localhost.evil.com/cb",
            "http://localhost@evil.com/",
            "https://user:pass@example.com/",
            "ftp://example.com/",
            "//example.com/",
            "https://",
            "https:///path",
            "https://exa mple.com/",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://example.com:80x/",
            "http://[::1/",
            "http://[::1]x/",
            "http://localhost\\@evil.com/",
            "https://example.com/\n",
        ] {
            assert_err(cb(bad), "statusCallback", "https");
        }
        let long = |n: usize| format!("https://example.com/{}", "a".repeat(n - 20));
        ok(cb(&long(2048)));
        assert_err(cb(&long(2049)), "statusCallback", "at most 2048 characters (got 2049)");
        assert_err(
            json!({"statusCallback": true, "contentMessage": {"text": "Hi"}}),
            "statusCallback",
            "must be a string",
        );
    }

    // ---- contentMessage -----------------------------------------------------------------

    #[test]
    fn content_message_is_a_required_object() {
        assert_err(json!({}), "contentMessage", "is required");
        assert_err(json!({"contentMessage": "Hi"}), "contentMessage", "must be an object");
    }

    #[test]
    fn content_message_needs_exactly_one_kind() {
        let e = err(json!({"contentMessage": {"suggestions": []}}));
        assert_eq!(e.path, "contentMessage");
        assert_eq!(
            e.message,
            "must contain exactly one of text, richCard, contentInfo, uploadedRbmFile (found none)"
        );
        let e = err(json!({"contentMessage": {"text": "Hi", "uploadedRbmFile": {"fileName": "files/a"}}}));
        assert_eq!(e.path, "contentMessage");
        assert!(e.message.ends_with("(found text, uploadedRbmFile)"), "{e}");
        // null does not count as a kind
        ok(json!({"contentMessage": {"text": "Hi", "richCard": null}}));
    }

    #[test]
    fn text_is_1_to_3072_chars() {
        ok(text(&"é".repeat(3072))); // chars, not bytes (6144 bytes)
        assert_err(text(&"é".repeat(3073)), "contentMessage.text", "at most 3072 characters (got 3073)");
        assert_err(text(""), "contentMessage.text", "must not be empty");
        assert_err(json!({"contentMessage": {"text": 5}}), "contentMessage.text", "must be a string");
    }

    // ---- suggestions --------------------------------------------------------------------

    #[test]
    fn at_most_11_suggestions_on_a_message() {
        let chips = |n: usize| Value::Array((0..n).map(|i| reply(&format!("S{i}"))).collect());
        ok(with_suggestions(chips(11)));
        assert_err(
            with_suggestions(chips(12)),
            "contentMessage.suggestions",
            "at most 11 suggestions (got 12)",
        );
        ok(with_suggestions(chips(0)));
        assert_err(with_suggestions(json!({"reply": {}})), "contentMessage.suggestions", "must be an array");
        assert_err(with_suggestions(json!(["Yes"])), "contentMessage.suggestions[0]", "must be an object");
    }

    #[test]
    fn suggestion_text_is_1_to_25_chars() {
        let four = vec![reply("a"), reply("b"), reply("c")];
        let mut s = four.clone();
        s.push(reply(&"x".repeat(25)));
        ok(with_suggestions(Value::Array(s)));
        let mut s = four.clone();
        s.push(reply(&"x".repeat(26)));
        let e = err(with_suggestions(Value::Array(s)));
        assert_eq!(e.path, "contentMessage.suggestions[3].reply.text");
        assert_eq!(e.message, "must be at most 25 characters (got 26)");
        assert_eq!(
            e.to_string(),
            "contentMessage.suggestions[3].reply.text: must be at most 25 characters (got 26)"
        );
        assert_err(
            with_suggestions(json!([reply("")])),
            "contentMessage.suggestions[0].reply.text",
            "must not be empty",
        );
        assert_err(
            with_suggestions(json!([{"reply": {"postbackData": "p"}}])),
            "contentMessage.suggestions[0].reply.text",
            "is required",
        );
        assert_err(
            with_suggestions(
                json!([{"action": {"text": "x".repeat(26), "postbackData": "p", "shareLocationAction": {}}}]),
            ),
            "contentMessage.suggestions[0].action.text",
            "at most 25",
        );
    }

    #[test]
    fn postback_data_is_required_and_at_most_2048() {
        let chip = |p: Value| with_suggestions(json!([{"reply": {"text": "Yes", "postbackData": p}}]));
        ok(chip(json!("p".repeat(2048))));
        assert_err(
            chip(json!("p".repeat(2049))),
            "contentMessage.suggestions[0].reply.postbackData",
            "at most 2048",
        );
        assert_err(chip(json!("")), "contentMessage.suggestions[0].reply.postbackData", "must not be empty");
        assert_err(chip(json!(null)), "contentMessage.suggestions[0].reply.postbackData", "is required");
        assert_err(chip(json!(1)), "contentMessage.suggestions[0].reply.postbackData", "must be a string");
        assert_err(
            with_suggestions(json!([{"action": {"text": "Go", "shareLocationAction": {}}}])),
            "contentMessage.suggestions[0].action.postbackData",
            "is required",
        );
    }

    #[test]
    fn a_suggestion_is_exactly_one_of_reply_or_action() {
        assert_err(
            with_suggestions(json!([{}])),
            "contentMessage.suggestions[0]",
            "exactly one of reply, action (found none)",
        );
        let both = json!([{"reply": {"text": "a", "postbackData": "a"},
                           "action": {"text": "a", "postbackData": "a", "shareLocationAction": {}}}]);
        assert_err(with_suggestions(both), "contentMessage.suggestions[0]", "(found action, reply)");
        assert_err(
            with_suggestions(json!([{"reply": "Yes"}])),
            "contentMessage.suggestions[0].reply",
            "must be an object",
        );
    }

    #[test]
    fn an_action_has_exactly_one_action_kind() {
        let base = |extra: Value| {
            let mut a = json!({"text": "Go", "postbackData": "go"});
            a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            with_suggestions(json!([{"action": a}]))
        };
        assert_err(base(json!({})), "contentMessage.suggestions[0].action", "found none");
        assert_err(
            base(json!({"shareLocationAction": {}, "dialAction": {"phoneNumber": PHONE}})),
            "contentMessage.suggestions[0].action",
            "(found dialAction, shareLocationAction)",
        );
        assert_err(
            base(json!({"shareLocationAction": true})),
            "contentMessage.suggestions[0].action.shareLocationAction",
            "must be an object",
        );
        assert_err(
            base(json!({"fooAction": []})),
            "contentMessage.suggestions[0].action.fooAction",
            "must be an object",
        );
    }

    #[test]
    fn action_phones_urls_and_times_are_checked() {
        let p = "contentMessage.suggestions[0].action";
        ok(action("dialAction", json!({"phoneNumber": "+15556667777"})));
        assert_err(
            action("dialAction", json!({"phoneNumber": "5556667777"})),
            &format!("{p}.dialAction.phoneNumber"),
            "E.164",
        );
        assert_err(action("dialAction", json!({})), &format!("{p}.dialAction.phoneNumber"), "is required");
        ok(action("openUrlAction", json!({"url": "http://example.com"})));
        assert_err(
            action("openUrlAction", json!({"url": "javascript:alert(1)"})),
            &format!("{p}.openUrlAction.url"),
            "http(s) URL",
        );
        assert_err(action("openUrlAction", json!({})), &format!("{p}.openUrlAction.url"), "is required");
        let long = format!("https://example.com/{}", "a".repeat(2048 - 20));
        ok(action("openUrlAction", json!({ "url": long })));
        assert_err(
            action("openUrlAction", json!({ "url": format!("{long}a") })),
            &format!("{p}.openUrlAction.url"),
            "at most 2048",
        );
        assert_err(
            action("composeAction", json!({"composeTextMessage": {"phoneNumber": "12", "text": "x"}})),
            &format!("{p}.composeAction.composeTextMessage.phoneNumber"),
            "E.164",
        );
        assert_err(
            action(
                "createCalendarEventAction",
                json!({"startTime": "tomorrow", "endTime": "2020-06-30T20:00:00Z", "title": "t"}),
            ),
            &format!("{p}.createCalendarEventAction.startTime"),
            "RFC 3339",
        );
        assert_err(
            action("viewLocationAction", json!({"latLong": [37.4, -122.0]})),
            &format!("{p}.viewLocationAction.latLong"),
            "must be an object",
        );
        let fallback = |url: &str| {
            with_suggestions(
                json!([{"action": {"text": "Go", "postbackData": "go", "fallbackUrl": url, "shareLocationAction": {}}}]),
            )
        };
        ok(fallback("https://example.com/fallback"));
        assert_err(fallback("example.com"), &format!("{p}.fallbackUrl"), "http(s) URL");
    }

    // ---- rich cards ---------------------------------------------------------------------

    #[test]
    fn rich_card_is_exactly_one_of_standalone_or_carousel() {
        assert_err(
            json!({"contentMessage": {"richCard": {}}}),
            "contentMessage.richCard",
            "standaloneCard, carouselCard (found none)",
        );
        assert_err(
            json!({"contentMessage": {"richCard": {"standaloneCard": {"cardContent": card("a")},
                                                   "carouselCard": {"cardContents": [card("a"), card("b")]}}}}),
            "contentMessage.richCard",
            "(found carouselCard, standaloneCard)",
        );
        assert_err(
            json!({"contentMessage": {"richCard": []}}),
            "contentMessage.richCard",
            "must be an object",
        );
        assert_err(
            json!({"contentMessage": {"richCard": {"standaloneCard": {}}}}),
            "contentMessage.richCard.standaloneCard.cardContent",
            "is required",
        );
    }

    #[test]
    fn carousel_has_2_to_10_cards() {
        let cards = |n: usize| (0..n).map(|i| card(&format!("Card {i}"))).collect::<Vec<_>>();
        ok(carousel(cards(2)));
        ok(carousel(cards(10)));
        let path = "contentMessage.richCard.carouselCard.cardContents";
        assert_err(carousel(cards(1)), path, "at least 2 cards (got 1)");
        assert_err(carousel(cards(11)), path, "at most 10 cards (got 11)");
        assert_err(json!({"contentMessage": {"richCard": {"carouselCard": {}}}}), path, "is required");
        assert_err(carousel(vec![card("a"), json!("b")]), &format!("{path}[1]"), "must be an object");
    }

    #[test]
    fn carousel_card_width_is_small_or_medium() {
        let width = |w: &str| json!({"contentMessage": {"richCard": {"carouselCard": {"cardWidth": w, "cardContents": [card("a"), card("b")]}}}});
        ok(width("SMALL"));
        ok(width("MEDIUM"));
        assert_err(width("LARGE"), "contentMessage.richCard.carouselCard.cardWidth", "SMALL, MEDIUM");
    }

    #[test]
    fn card_title_at_most_200_and_description_at_most_2000() {
        ok(carousel(vec![card("a"), card(&"t".repeat(200))]));
        let e = err(carousel(vec![card("a"), card(&"t".repeat(201))]));
        assert_eq!(e.path, "contentMessage.richCard.carouselCard.cardContents[1].title");
        assert_eq!(e.message, "must be at most 200 characters (got 201)");
        ok(standalone(json!({"description": "d".repeat(2000)})));
        assert_err(
            standalone(json!({"description": "d".repeat(2001)})),
            "contentMessage.richCard.standaloneCard.cardContent.description",
            "at most 2000 characters (got 2001)",
        );
        assert_err(
            standalone(json!({"title": 1})),
            "contentMessage.richCard.standaloneCard.cardContent.title",
            "must be a string",
        );
    }

    #[test]
    fn card_needs_title_description_or_media() {
        let path = "contentMessage.richCard.standaloneCard.cardContent";
        assert_err(standalone(json!({})), path, "at least one of title, description or media");
        assert_err(standalone(json!({"title": "", "suggestions": [reply("a")]})), path, "at least one of");
        ok(standalone(json!({"title": "T"})));
        ok(standalone(json!({"description": "D"})));
        ok(standalone(json!({"media": {"uploadedRbmFile": {"fileName": "files/a"}}})));
        ok(standalone(
            json!({"media": {"uploadedRbmFile": {"fileName": "files/a", "contentDescription": "A red bike"}}}),
        ));
        ok(standalone(
            json!({"media": {"contentInfo": {"fileUrl": "https://e.com/a.png", "contentDescription": "A red bike"}}}),
        ));
        assert!(err(
            json!({"contentMessage": {"uploadedRbmFile": {"fileName": "files/a", "contentDescription": 7}}})
        )
        .path
        .ends_with("uploadedRbmFile.contentDescription"));
    }

    #[test]
    fn at_most_4_suggestions_on_a_card() {
        let chips = |n: usize| Value::Array((0..n).map(|i| reply(&format!("S{i}"))).collect());
        ok(standalone(json!({"title": "T", "suggestions": chips(4)})));
        assert_err(
            standalone(json!({"title": "T", "suggestions": chips(5)})),
            "contentMessage.richCard.standaloneCard.cardContent.suggestions",
            "at most 4 suggestions (got 5)",
        );
        let mut bad = chips(3);
        bad.as_array_mut().unwrap().push(reply(&"x".repeat(26)));
        assert_err(
            carousel(vec![card("a"), json!({"title": "b", "suggestions": bad})]),
            "contentMessage.richCard.carouselCard.cardContents[1].suggestions[3].reply.text",
            "at most 25",
        );
    }

    #[test]
    fn card_media_has_one_file_and_a_known_height() {
        let media = |m: Value| standalone(json!({ "media": m }));
        let path = "contentMessage.richCard.standaloneCard.cardContent.media";
        for h in ["SHORT", "MEDIUM", "TALL"] {
            ok(media(json!({"height": h, "contentInfo": {"fileUrl": "https://example.com/a.png"}})));
        }
        assert_err(
            media(json!({"height": "HUGE", "contentInfo": {"fileUrl": "https://e.com/a"}})),
            &format!("{path}.height"),
            "SHORT, MEDIUM, TALL",
        );
        assert_err(media(json!({"height": "TALL"})), path, "contentInfo, uploadedRbmFile (found none)");
        assert_err(
            media(
                json!({"contentInfo": {"fileUrl": "https://e.com/a"}, "uploadedRbmFile": {"fileName": "files/a"}}),
            ),
            path,
            "(found contentInfo, uploadedRbmFile)",
        );
        assert_err(
            media(json!({"contentInfo": {"fileUrl": "file:///etc/passwd"}})),
            &format!("{path}.contentInfo.fileUrl"),
            "http(s) URL",
        );
        assert_err(media(json!("https://e.com/a")), path, "must be an object");
    }

    // ---- files ----------------------------------------------------------------------------

    #[test]
    fn content_info_urls_and_force_refresh() {
        let p = "contentMessage.contentInfo";
        ok(content_info(json!({"fileUrl": "http://example.com/a.pdf"})));
        assert_err(content_info(json!({})), &format!("{p}.fileUrl"), "is required");
        assert_err(
            content_info(json!({"fileUrl": "example.com/a.png"})),
            &format!("{p}.fileUrl"),
            "http(s) URL",
        );
        let long = format!("https://example.com/{}", "a".repeat(2048 - 20));
        ok(content_info(json!({ "fileUrl": long })));
        assert_err(
            content_info(json!({ "fileUrl": format!("{long}a") })),
            &format!("{p}.fileUrl"),
            "at most 2048 characters (got 2049)",
        );
        assert_err(
            content_info(json!({"fileUrl": "https://e.com/a", "thumbnailUrl": "ftp://e.com/t"})),
            &format!("{p}.thumbnailUrl"),
            "http(s) URL",
        );
        for good in [json!(true), json!(false), json!("true"), json!("false"), json!(null)] {
            ok(content_info(json!({"fileUrl": "https://e.com/a", "forceRefresh": good})));
        }
        for bad in [json!(1), json!("yes"), json!([])] {
            assert_err(
                content_info(json!({"fileUrl": "https://e.com/a", "forceRefresh": bad})),
                &format!("{p}.forceRefresh"),
                "must be a boolean",
            );
        }
        assert_err(content_info(json!("https://e.com/a")), p, "must be an object");
    }

    #[test]
    fn uploaded_file_needs_a_file_name() {
        let p = "contentMessage.uploadedRbmFile";
        let file = |f: Value| json!({"contentMessage": {"uploadedRbmFile": f}});
        ok(file(json!({"fileName": "files/a"})));
        assert_err(file(json!({})), &format!("{p}.fileName"), "is required");
        assert_err(file(json!({"fileName": ""})), &format!("{p}.fileName"), "must not be empty");
        assert_err(file(json!({"fileName": 3})), &format!("{p}.fileName"), "must be a string");
        assert_err(
            file(json!({"fileName": "files/a", "thumbnailName": {}})),
            &format!("{p}.thumbnailName"),
            "must be a string",
        );
    }

    // ---- message-level fields -------------------------------------------------------------

    #[test]
    fn message_traffic_type_values() {
        for t in TRAFFIC_TYPES {
            ok(json!({"contentMessage": {"text": "Hi"}, "messageTrafficType": t}));
        }
        assert_err(
            json!({"contentMessage": {"text": "Hi"}, "messageTrafficType": "SPAM"}),
            "messageTrafficType",
            "must be one of AUTHENTICATION",
        );
        assert_err(
            json!({"contentMessage": {"text": "Hi"}, "messageTrafficType": 1}),
            "messageTrafficType",
            "must be a string",
        );
    }

    #[test]
    fn ttl_is_positive_and_at_most_15_days() {
        let ttl = |t: Value| json!({"contentMessage": {"text": "Hi"}, "ttl": t});
        for good in ["1296000s", "3600s", "0.000000001s", "1.5s", "1295999.999999999s"] {
            ok(ttl(json!(good)));
        }
        assert_err(ttl(json!("1296001s")), "ttl", "at most 1296000s (15 days)");
        assert_err(ttl(json!("1296000.000000001s")), "ttl", "at most 1296000s");
        assert_err(ttl(json!("0s")), "ttl", "more than 0s");
        assert_err(ttl(json!("-5s")), "ttl", "more than 0s");
        for bad in
            ["3600", "1h", "s", ".5s", "1.s", "1.0000000001s", "+5s", " 5s", "99999999999999999999999s"]
        {
            assert_err(ttl(json!(bad)), "ttl", "duration in seconds");
        }
        assert_err(ttl(json!(3600)), "ttl", "must be a string");
    }

    #[test]
    fn ttl_and_expire_time_are_exclusive() {
        ok(json!({"contentMessage": {"text": "Hi"}, "expireTime": "2026-11-25T10:00:00.123Z"}));
        ok(json!({"contentMessage": {"text": "Hi"}, "expireTime": "2026-11-25T10:00:00+00:00", "ttl": null}));
        assert_err(
            json!({"contentMessage": {"text": "Hi"}, "ttl": "60s", "expireTime": "2026-11-25T10:00:00Z"}),
            "ttl",
            "together with expireTime",
        );
        assert_err(
            json!({"contentMessage": {"text": "Hi"}, "expireTime": "2026-11-25 10:00"}),
            "expireTime",
            "RFC 3339",
        );
        assert_err(
            json!({"contentMessage": {"text": "Hi"}, "expireTime": 1764064800}),
            "expireTime",
            "must be a string",
        );
    }

    #[test]
    fn fallback_is_ours_and_checked() {
        let req = validate_send(
            json!({"phoneNumber": "+12223334444", "contentMessage": {"text": "Hi"}, "fallback": {"afterSeconds": 30}})
                .to_string()
                .as_bytes(),
        )
        .expect("valid");
        assert_eq!(req.fallback, Some(FallbackSpec { after_seconds: Some(30), sms_text: "Hi".into() }));
        assert!(!req.relayed_json.contains("fallback"));
        // the TTL is the deadline
        let ttl = validate_send(
            json!({"phoneNumber": "+12223334444", "contentMessage": {"text": "Hi"}, "ttl": "60s", "fallback": {"sms": {"text": "SMS"}}})
                .to_string()
                .as_bytes(),
        )
        .expect("valid");
        assert_eq!(ttl.fallback, Some(FallbackSpec { after_seconds: None, sms_text: "SMS".into() }));
        let card = json!({"richCard": {"standaloneCard": {"cardContent": {"title": "T"}}}});
        let with = |fb: Value, content: Value| json!({"contentMessage": content, "fallback": fb});
        assert_err(with(json!({"afterSeconds": 30}), card.clone()), "fallback.sms.text", "no text");
        assert_err(
            with(json!({"afterSeconds": 4}), json!({"text": "Hi"})),
            "fallback.afterSeconds",
            "from 5 to 2592000",
        );
        assert_err(
            with(json!({"afterSeconds": 2_592_001}), json!({"text": "Hi"})),
            "fallback.afterSeconds",
            "from 5",
        );
        assert_err(
            with(json!({}), json!({"text": "Hi"})),
            "fallback.afterSeconds",
            "unless the message has ttl",
        );
        assert_err(
            with(json!({"afterSeconds": 9, "sms": {"text": "x".repeat(1601)}}), json!({"text": "Hi"})),
            "fallback.sms.text",
            "at most 1600",
        );
        assert_err(
            with(json!({"afterSeconds": 9, "sms": {"text": 5}}), json!({"text": "Hi"})),
            "fallback.sms.text",
            "string",
        );
        assert_err(with(json!("soon"), json!({"text": "Hi"})), "fallback", "object");
    }

    #[test]
    fn ttl_limit_is_exact_to_the_nanosecond() {
        assert_eq!(duration_nanos("1296000.000000001s"), Some(MAX_TTL_NANOS + 1));
        assert_err(json!({"ttl": "1296000.000000001s", "contentMessage": {"text": "Hi"}}), "ttl", "at most");
    }

    // ---- wrong types, hostile input -------------------------------------------------------

    #[test]
    fn wrong_json_types_are_named_at_each_field() {
        let cases = [
            (json!({"contentMessage": {"text": []}}), "contentMessage.text", "must be a string"),
            (
                json!({"contentMessage": {"text": "Hi", "suggestions": "x"}}),
                "contentMessage.suggestions",
                "must be an array",
            ),
            (
                json!({"contentMessage": {"text": "Hi", "suggestions": [[]]}}),
                "contentMessage.suggestions[0]",
                "must be an object",
            ),
            (
                json!({"contentMessage": {"text": "Hi", "suggestions": [{"reply": {"text": 1, "postbackData": "p"}}]}}),
                "contentMessage.suggestions[0].reply.text",
                "must be a string",
            ),
            (
                json!({"contentMessage": {"text": "Hi", "suggestions": [{"action": 1}]}}),
                "contentMessage.suggestions[0].action",
                "must be an object",
            ),
            (
                action("dialAction", json!({"phoneNumber": 15556667777u64})),
                "contentMessage.suggestions[0].action.dialAction.phoneNumber",
                "must be a string",
            ),
            (
                action("openUrlAction", json!({"url": {}})),
                "contentMessage.suggestions[0].action.openUrlAction.url",
                "must be a string",
            ),
            (
                action("composeAction", json!({"composeTextMessage": "x"})),
                "contentMessage.suggestions[0].action.composeAction.composeTextMessage",
                "must be an object",
            ),
            (
                action("createCalendarEventAction", json!({"title": 1})),
                "contentMessage.suggestions[0].action.createCalendarEventAction.title",
                "must be a string",
            ),
            (
                json!({"contentMessage": {"text": "Hi", "suggestions": [{"action": {"text": "a", "postbackData": "b", "fallbackUrl": 1, "shareLocationAction": {}}}]}}),
                "contentMessage.suggestions[0].action.fallbackUrl",
                "must be a string",
            ),
            (
                json!({"contentMessage": {"richCard": {"standaloneCard": "x"}}}),
                "contentMessage.richCard.standaloneCard",
                "must be an object",
            ),
            (
                json!({"contentMessage": {"richCard": {"standaloneCard": {"cardContent": []}}}}),
                "contentMessage.richCard.standaloneCard.cardContent",
                "must be an object",
            ),
            (
                json!({"contentMessage": {"richCard": {"carouselCard": {"cardContents": {}}}}}),
                "contentMessage.richCard.carouselCard.cardContents",
                "must be an array",
            ),
            (
                json!({"contentMessage": {"richCard": {"carouselCard": {"cardWidth": 1, "cardContents": [card("a"), card("b")]}}}}),
                "contentMessage.richCard.carouselCard.cardWidth",
                "must be a string",
            ),
            (
                standalone(json!({"title": "T", "media": "x"})),
                "contentMessage.richCard.standaloneCard.cardContent.media",
                "must be an object",
            ),
            (
                standalone(
                    json!({"title": "T", "media": {"height": 1, "uploadedRbmFile": {"fileName": "f"}}}),
                ),
                "contentMessage.richCard.standaloneCard.cardContent.media.height",
                "must be a string",
            ),
            (
                standalone(json!({"title": "T", "suggestions": {}})),
                "contentMessage.richCard.standaloneCard.cardContent.suggestions",
                "must be an array",
            ),
            (
                standalone(json!({"description": false})),
                "contentMessage.richCard.standaloneCard.cardContent.description",
                "must be a string",
            ),
            (
                json!({"contentMessage": {"uploadedRbmFile": "files/a"}}),
                "contentMessage.uploadedRbmFile",
                "must be an object",
            ),
            (content_info(json!({"fileUrl": 1})), "contentMessage.contentInfo.fileUrl", "must be a string"),
            (
                content_info(json!({"fileUrl": "https://e.com/a", "thumbnailUrl": 1})),
                "contentMessage.contentInfo.thumbnailUrl",
                "must be a string",
            ),
        ];
        for (message, path, words) in cases {
            assert_err(message, path, words);
        }
    }

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        let deep_arrays = "[".repeat(100_000);
        let deep_objects = format!("{{\"phoneNumber\":\"{PHONE}\",\"x\":{}", "{\"a\":".repeat(50_000));
        let deep_in_valid_spot = format!(
            "{{\"phoneNumber\":\"{PHONE}\",\"contentMessage\":{{\"text\":\"Hi\"}},\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let inputs: Vec<Vec<u8>> = vec![
            vec![0xff, 0xfe, 0xfd],
            b"{\"phoneNumber\":\"+12223334444\",\"contentMessage\":{\"text\":\"\xff\xfe\"}}".to_vec(),
            b"{\"phoneNumber\":\"\\ud800\"}".to_vec(),
            vec![0; 64],
            deep_arrays.into_bytes(),
            deep_objects.into_bytes(),
            deep_in_valid_spot.into_bytes(),
            br#"{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi"},"n":1e999}"#.to_vec(),
            format!(
                r#"{{"phoneNumber":"{PHONE}","contentMessage":{{"text":"Hi"}},"n":{}}}"#,
                "9".repeat(400)
            )
            .into_bytes(),
            br#"{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi"},"n":-1e999}"#.to_vec(),
            br#"{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi"},"n":NaN}"#.to_vec(),
            br#"{"eventType":"READ","messageId":"\u0000"}"#.to_vec(),
            "{\"phoneNumber\":\"+1222333444\u{0663}\",\"contentMessage\":{\"text\":\"Hi\"}}"
                .as_bytes()
                .to_vec(),
        ];
        for input in &inputs {
            let e = validate_send(input).unwrap_err();
            assert!(!e.message.is_empty());
            assert!(validate_agent_event(input).is_err());
        }
        // Recursion beyond serde_json's limit is a JSON error on the whole body.
        assert_eq!(validate_send(&inputs[4]).unwrap_err().path, "");
        // Finite numbers parse and are relayed; beyond f64 is an error (above). Floats are
        // re-serialised by serde_json's fast parser: exact for ordinary coordinates, at most
        // one unit in the last place off otherwise (its `float_roundtrip` costs ~8 KB of wasm).
        let big = format!(
            r#"{{"phoneNumber":"{PHONE}","contentMessage":{{"text":"Hi"}},"n":{},"m":18446744073709551615,"f":1e308,"g":97.42831140333153}}"#,
            "9".repeat(300)
        );
        let req = validate_send(big.as_bytes()).unwrap();
        assert!(req.agent_message.contains_key("n"));
        assert!(req.relayed_json.contains(r#""m":18446744073709551615"#), "{}", req.relayed_json);
        // Wrong types at every field of our own and at the top level.
        for (field, value) in [
            ("phoneNumber", json!({})),
            ("messageId", json!([])),
            ("agentId", json!(1.5)),
            ("statusCallback", json!(false)),
            ("contentMessage", json!([])),
            ("messageTrafficType", json!({})),
            ("ttl", json!(1)),
            ("expireTime", json!(true)),
        ] {
            let mut m = text("Hi").as_object().unwrap().clone();
            m.insert(field.into(), value);
            let e = err(Value::Object(m));
            assert_eq!(e.path, field);
            assert!(e.message.starts_with("must be a"), "{e}");
        }
    }

    // ---- agent events -------------------------------------------------------------------

    fn event(v: Value) -> Result<AgentEventRequest, ValidationError> {
        validate_agent_event(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn agent_events_read_and_is_typing() {
        assert_eq!(
            event(json!({"eventType": "READ", "messageId": "MxBZLCVr3ZRzGqkGiQUP1yHQ"})),
            Ok(AgentEventRequest::Read { message_id: "MxBZLCVr3ZRzGqkGiQUP1yHQ".into() })
        );
        assert_eq!(event(json!({"eventType": "IS_TYPING"})), Ok(AgentEventRequest::IsTyping));
        assert_eq!(event(json!({"eventType": "IS_TYPING", "other": 1})), Ok(AgentEventRequest::IsTyping));
        ok_id(&"a".repeat(256));
        ok_id("a.b_c~d=e+f-g");
        let e = event(json!({"eventType": "READ", "messageId": "a".repeat(257)})).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("messageId", "must be at most 256 characters (got 257)")
        );
        for bad in ["", "a/b", "a b", "ä", "a\nb"] {
            assert_eq!(
                event(json!({"eventType": "READ", "messageId": bad})).unwrap_err().path,
                "messageId",
                "{bad:?}"
            );
        }
        assert_eq!(event(json!({"eventType": "READ"})).unwrap_err().message, "is required");
        assert_eq!(
            event(json!({"eventType": "READ", "messageId": 5})).unwrap_err().message,
            "must be a string"
        );
    }

    fn ok_id(id: &str) {
        assert_eq!(
            event(json!({"eventType": "READ", "messageId": id})),
            Ok(AgentEventRequest::Read { message_id: id.into() })
        );
    }

    #[test]
    fn agent_event_type_errors_are_at_event_type() {
        for bad in [
            json!({}),
            json!({"eventType": "DELIVERED"}),
            json!({"eventType": "read"}),
            json!({"eventType": 1}),
            json!({"eventType": null}),
        ] {
            let e = event(bad.clone()).unwrap_err();
            assert_eq!(e.path, "eventType", "{bad}");
        }
        assert_eq!(
            event(json!({"eventType": "SUBSCRIBE"})).unwrap_err().message,
            "must be READ or IS_TYPING"
        );
        assert_eq!(validate_agent_event(b"[]").unwrap_err().path, "");
    }
}
