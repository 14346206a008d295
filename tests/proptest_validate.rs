//! Property tests of send validation (`core::validate`): it never panics, whatever the body;
//! it accepts every AgentMessage in the shapes Google documents, within the documented limits
//! (and relays it verbatim); and a message with exactly one field over its limit is refused
//! with that field's JSON path.

use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::string::string_regex;
use rbm_edge::core::validate::{validate_agent_event, validate_send, SendRequest, MAX_BODY_BYTES};
use serde_json::{json, Map, Value};

fn config() -> ProptestConfig {
    // Failures print the minimal input; there is no lib.rs beside tests/ to persist them to.
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

fn regex(re: &str) -> BoxedStrategy<String> {
    string_regex(re).unwrap_or_else(|e| panic!("{re}: {e}")).boxed()
}

// ---- valid AgentMessages in Google's documented shapes ---------------------------------

/// `min..=max` characters: mostly short ASCII or any printable Unicode, sometimes exactly
/// `max` characters of one (possibly multi-byte) character, since limits count characters.
fn chars(min: usize, max: usize) -> BoxedStrategy<String> {
    let short = max.min(40);
    prop_oneof![
        6 => regex(&format!("[a-zA-Z0-9 ,.!?'#-]{{{min},{short}}}")),
        3 => regex(&format!("\\PC{{{min},{short}}}")),
        1 => select(vec!['a', 'é', '€', '👋', '中']).prop_map(move |c| c.to_string().repeat(max)),
    ]
    .boxed()
}

fn e164() -> BoxedStrategy<String> {
    prop_oneof![Just("+12223334444".to_string()), regex("\\+[1-9][0-9]{7,14}")].boxed()
}

/// An absolute http(s) URL of at most 2048 characters.
fn url() -> BoxedStrategy<String> {
    prop_oneof![
        6 => regex("https://[a-z]{1,12}\\.(com|org|dev)(/[a-zA-Z0-9_.-]{1,12}){0,3}"),
        1 => Just("http://example.com:8080/a/b?c=d#e".to_string()),
        1 => Just("HTTPS://[2001:db8::1]:443/x".to_string()),
        1 => Just(format!("https://example.com/{}", "a".repeat(2048 - "https://example.com/".len()))),
    ]
    .boxed()
}

fn timestamp() -> BoxedStrategy<String> {
    (
        2000u32..=2099,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        prop_oneof![Just(String::new()), regex("\\.[0-9]{1,9}")],
        prop_oneof![Just("Z".to_string()), regex("[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9]")],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, zone)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
        .boxed()
}

/// A `ttl` Duration of more than 0 s and at most 15 days.
fn ttl() -> BoxedStrategy<String> {
    prop_oneof![
        (1u64..1_296_000).prop_map(|s| format!("{s}s")),
        (0u64..1_296_000, regex("[0-9]{0,8}[1-9]")).prop_map(|(s, f)| format!("{s}.{f}s")),
        Just("1296000s".to_string()),
        Just("1296000.000000000s".to_string()),
    ]
    .boxed()
}

fn coordinate(max: f64) -> BoxedStrategy<f64> {
    let scaled = (max * 1e7) as i64;
    prop_oneof![(-scaled..=scaled).prop_map(|n| n as f64 / 1e7), -max..=max].boxed()
}

fn action_detail() -> BoxedStrategy<(&'static str, Value)> {
    prop_oneof![
        e164().prop_map(|n| ("dialAction", json!({"phoneNumber": n}))),
        (url(), option::of(select(vec!["FULL", "HALF", "TALL"])), chars(0, 40)).prop_map(|(u, mode, d)| {
            let mut a = json!({"url": u});
            if let Some(mode) = mode {
                a["application"] = "WEBVIEW".into();
                a["webviewViewMode"] = mode.into();
                a["description"] = d.into();
            }
            ("openUrlAction", a)
        }),
        // Coordinates to 7 decimals as apps write them (Google's: 37.4220188), or any f64 in
        // range (17 significant digits: relayed to within one ULP).
        (coordinate(90.0), coordinate(180.0), option::of(chars(1, 40))).prop_map(|(lat, lng, label)| {
            let mut a = json!({"latLong": {"latitude": lat, "longitude": lng}});
            if let Some(label) = label {
                a["label"] = label.into();
            }
            ("viewLocationAction", a)
        }),
        chars(1, 60).prop_map(|q| ("viewLocationAction", json!({"query": q}))),
        (timestamp(), timestamp(), chars(1, 60), chars(0, 60)).prop_map(|(s, e, t, d)| {
            ("createCalendarEventAction", json!({"startTime": s, "endTime": e, "title": t, "description": d}))
        }),
        Just(("shareLocationAction", json!({}))),
        (e164(), chars(0, 60)).prop_map(|(n, t)| {
            ("composeAction", json!({"composeTextMessage": {"phoneNumber": n, "text": t}}))
        }),
        (e164(), select(vec!["ACTION_TYPE_AUDIO", "ACTION_TYPE_VIDEO"])).prop_map(|(n, t)| {
            ("composeAction", json!({"composeRecordingMessage": {"phoneNumber": n, "type": t}}))
        }),
    ]
    .boxed()
}

/// A suggested reply or action: text ≤ 25 characters, postbackData ≤ 2048.
fn suggestion() -> BoxedStrategy<Value> {
    let postback = || prop_oneof![9 => chars(1, 40), 1 => chars(1, 2048)];
    prop_oneof![
        (chars(1, 25), postback()).prop_map(|(t, p)| json!({"reply": {"text": t, "postbackData": p}})),
        (chars(1, 25), postback(), option::of(url()), action_detail()).prop_map(
            |(t, p, fallback, (kind, d))| {
                let mut a = json!({"text": t, "postbackData": p});
                if let Some(f) = fallback {
                    a["fallbackUrl"] = f.into();
                }
                a[kind] = d;
                json!({"action": a})
            }
        ),
    ]
    .boxed()
}

fn force_refresh() -> BoxedStrategy<Value> {
    prop_oneof![any::<bool>().prop_map(Value::from), select(vec!["true", "false"]).prop_map(Value::from)]
        .boxed()
}

/// `(kind, value)` of a file: `contentInfo` or `uploadedRbmFile`.
fn file() -> BoxedStrategy<(&'static str, Value)> {
    prop_oneof![
        (url(), option::of(url()), option::of(force_refresh())).prop_map(|(u, thumb, force)| {
            let mut f = json!({"fileUrl": u});
            if let Some(t) = thumb {
                f["thumbnailUrl"] = t.into();
            }
            if let Some(r) = force {
                f["forceRefresh"] = r;
            }
            ("contentInfo", f)
        }),
        (regex("files/[a-z0-9]{1,20}"), option::of(regex("files/[a-z0-9]{1,20}"))).prop_map(|(n, t)| {
            let mut f = json!({"fileName": n});
            if let Some(t) = t {
                f["thumbnailName"] = t.into();
            }
            ("uploadedRbmFile", f)
        }),
    ]
    .boxed()
}

fn media() -> BoxedStrategy<Value> {
    (option::of(select(vec!["SHORT", "MEDIUM", "TALL"])), file())
        .prop_map(|(height, (kind, f))| {
            let mut m = json!({ kind: f });
            if let Some(h) = height {
                m["height"] = h.into();
            }
            m
        })
        .boxed()
}

/// A card: title ≤ 200, description ≤ 2000, media, ≤ 4 suggestions; at least one of the first
/// three.
fn card() -> BoxedStrategy<Value> {
    let description = prop_oneof![9 => chars(1, 120), 1 => chars(1, 2000)];
    (option::of(chars(1, 200)), option::of(description), option::of(media()), vec(suggestion(), 0..=4))
        .prop_filter("a card needs a title, a description or media", |(t, d, m, _)| {
            t.is_some() || d.is_some() || m.is_some()
        })
        .prop_map(|(t, d, m, s)| {
            let mut c = Map::new();
            if let Some(t) = t {
                c.insert("title".into(), t.into());
            }
            if let Some(d) = d {
                c.insert("description".into(), d.into());
            }
            if let Some(m) = m {
                c.insert("media".into(), m);
            }
            if !s.is_empty() {
                c.insert("suggestions".into(), s.into());
            }
            Value::Object(c)
        })
        .boxed()
}

fn rich_card() -> BoxedStrategy<Value> {
    prop_oneof![
        (
            card(),
            option::of(select(vec!["LEFT", "RIGHT"])),
            option::of(select(vec!["HORIZONTAL", "VERTICAL"]))
        )
            .prop_map(|(c, align, orient)| {
                let mut s = json!({"cardContent": c});
                if let Some(a) = align {
                    s["thumbnailImageAlignment"] = a.into();
                }
                if let Some(o) = orient {
                    s["cardOrientation"] = o.into();
                }
                json!({"standaloneCard": s})
            }),
        (option::of(select(vec!["SMALL", "MEDIUM"])), vec(card(), 2..=10)).prop_map(|(width, cards)| {
            let mut c = json!({"cardContents": cards});
            if let Some(w) = width {
                c["cardWidth"] = w.into();
            }
            json!({"carouselCard": c})
        }),
    ]
    .boxed()
}

/// An AgentMessage: one content kind, ≤ 11 suggestions, a traffic type, at most one of
/// `ttl` and `expireTime`.
fn agent_message() -> BoxedStrategy<Value> {
    let text = prop_oneof![8 => chars(1, 200), 2 => chars(1, 3072)];
    let content = prop_oneof![
        3 => text.prop_map(|t| ("text", Value::from(t))),
        2 => rich_card().prop_map(|r| ("richCard", r)),
        2 => file(),
    ];
    let traffic = option::of(select(vec![
        "AUTHENTICATION",
        "TRANSACTION",
        "PROMOTION",
        "SERVICEREQUEST",
        "ACKNOWLEDGEMENT",
        "MESSAGE_TRAFFIC_TYPE_UNSPECIFIED",
    ]));
    let expiry = prop_oneof![
        Just(None),
        ttl().prop_map(|t| Some(("ttl", t))),
        timestamp().prop_map(|t| Some(("expireTime", t)))
    ];
    (content, option::of(vec(suggestion(), 0..=11)), traffic, expiry)
        .prop_map(|((kind, value), suggestions, traffic, expiry)| {
            let mut content = json!({ kind: value });
            if let Some(s) = suggestions {
                content["suggestions"] = s.into();
            }
            let mut m = json!({"contentMessage": content});
            if let Some(t) = traffic {
                m["messageTrafficType"] = t.into();
            }
            if let Some((k, v)) = expiry {
                m[k] = v.into();
            }
            m
        })
        .boxed()
}

/// Our own fields: `phoneNumber` (required), `messageId`, `agentId`, `statusCallback`.
fn our_fields() -> BoxedStrategy<Map<String, Value>> {
    let callback = prop_oneof![
        url().prop_filter("https", |u| u.starts_with("https://")),
        Just("http://127.0.0.1:8787/cb".to_string()),
        Just("http://localhost/cb".to_string()),
        Just("http://[::1]:9/cb".to_string()),
    ];
    (
        e164(),
        option::of(regex("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")),
        option::of(prop_oneof![Just("my_agent_abc123_agent".to_string()), regex("[A-Za-z0-9_.-]{1,128}")]),
        option::of(callback),
    )
        .prop_map(|(phone, id, agent, cb)| {
            let mut m = Map::new();
            m.insert("phoneNumber".into(), phone.into());
            for (k, v) in [("messageId", id), ("agentId", agent), ("statusCallback", cb)] {
                if let Some(v) = v {
                    m.insert(k.into(), v.into());
                }
            }
            m
        })
        .boxed()
}

/// `(our fields, AgentMessage)`.
fn valid_request() -> BoxedStrategy<(Map<String, Value>, Value)> {
    (our_fields(), agent_message()).boxed()
}

fn body_of(ours: &Map<String, Value>, message: &Value) -> Value {
    let mut body = message.as_object().cloned().unwrap_or_default();
    body.extend(ours.clone());
    Value::Object(body)
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

// ---- paths into a message and the limits at them ---------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn path_string(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

fn get_mut<'a>(v: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    steps.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// A documented limit at one place in a message.
#[derive(Debug, Clone)]
enum Limit {
    /// A string of at most this many characters.
    Chars(usize),
    /// A URL of at most 2048 characters.
    Url,
    /// A list of at most this many items, and an item to fill it with.
    Items(usize, Value),
    /// A list of at least this many items.
    AtLeast(usize),
    Ttl,
}

/// Every place in `v` (an AgentMessage, or part of one at `steps`) where a documented limit
/// applies.
fn limits(v: &Value, steps: &mut Vec<Step>, out: &mut Vec<(Vec<Step>, Limit)>) {
    if steps.is_empty() && v.pointer("/contentMessage/suggestions").is_none() {
        // Suggestions can always be added to a content message: 12 is one too many.
        let at = vec![Step::Key("contentMessage".into()), Step::Key("suggestions".into())];
        out.push((at, Limit::Items(11, json!({"reply": {"text": "r", "postbackData": "p"}}))));
    }
    let parent = path_string(steps);
    let in_card = match steps.as_slice() {
        [.., Step::Key(k)] => k == "cardContent",
        [.., Step::Key(k), Step::Index(_)] => k == "cardContents",
        _ => false,
    };
    let in_chip = parent.ends_with(".reply") || parent.ends_with(".action");
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                steps.push(Step::Key(k.clone()));
                let limit = match (k.as_str(), child) {
                    ("text", Value::String(_)) if parent == "contentMessage" => Some(Limit::Chars(3072)),
                    ("text", Value::String(_)) if in_chip => Some(Limit::Chars(25)),
                    ("postbackData", Value::String(_)) => Some(Limit::Chars(2048)),
                    ("fileUrl" | "thumbnailUrl" | "url" | "fallbackUrl", Value::String(_)) => {
                        Some(Limit::Url)
                    }
                    ("title", Value::String(_)) if in_card => Some(Limit::Chars(200)),
                    ("description", Value::String(_)) if in_card => Some(Limit::Chars(2000)),
                    ("suggestions", Value::Array(_)) => {
                        let max = if parent == "contentMessage" { 11 } else { 4 };
                        Some(Limit::Items(max, json!({"reply": {"text": "r", "postbackData": "p"}})))
                    }
                    ("cardContents", Value::Array(_)) => Some(Limit::Items(10, json!({"title": "t"}))),
                    ("ttl", Value::String(_)) if parent.is_empty() => Some(Limit::Ttl),
                    _ => None,
                };
                if let Some(l) = limit {
                    out.push((steps.clone(), l));
                }
                if let ("cardContents", Value::Array(_)) = (k.as_str(), child) {
                    out.push((steps.clone(), Limit::AtLeast(2)));
                }
                limits(child, steps, out);
                steps.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                limits(child, steps, out);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// Puts `message` one over the limit at `at`.
fn break_limit(message: &mut Value, at: &[Step], limit: &Limit, fill: char) {
    if let (Limit::Items(..), Some((Step::Key(k), parent))) = (limit, at.split_last()) {
        if let Some(Value::Object(p)) = get_mut(message, parent) {
            p.entry(k.clone()).or_insert_with(|| json!([]));
        }
    }
    let Some(v) = get_mut(message, at) else { return };
    match limit {
        Limit::Chars(max) => *v = fill.to_string().repeat(max + 1).into(),
        Limit::Url => {
            *v = format!("https://example.com/{}", "a".repeat(2049 - "https://example.com/".len())).into()
        }
        Limit::Items(max, filler) => {
            if let Value::Array(items) = v {
                while items.len() <= *max {
                    items.push(filler.clone());
                }
            }
        }
        Limit::AtLeast(min) => {
            if let Value::Array(items) = v {
                items.truncate(min - 1);
            }
        }
        Limit::Ttl => *v = "1296000.000000001s".into(),
    }
}

// ---- arbitrary JSON -----------------------------------------------------------------------

const KEYS: &[&str] = &[
    "phoneNumber",
    "messageId",
    "agentId",
    "statusCallback",
    "contentMessage",
    "text",
    "suggestions",
    "reply",
    "action",
    "postbackData",
    "richCard",
    "standaloneCard",
    "carouselCard",
    "cardContent",
    "cardContents",
    "cardWidth",
    "title",
    "description",
    "media",
    "height",
    "contentInfo",
    "fileUrl",
    "thumbnailUrl",
    "forceRefresh",
    "uploadedRbmFile",
    "fileName",
    "thumbnailName",
    "dialAction",
    "openUrlAction",
    "url",
    "fallbackUrl",
    "viewLocationAction",
    "latLong",
    "createCalendarEventAction",
    "startTime",
    "endTime",
    "composeAction",
    "composeTextMessage",
    "composeRecordingMessage",
    "shareLocationAction",
    "payAction",
    "messageTrafficType",
    "ttl",
    "expireTime",
    "eventType",
];

const STRINGS: &[&str] = &[
    "+12223334444",
    "123e4567-e89b-12d3-a456-426614174000",
    "https://example.com/a",
    "http://127.0.0.1/cb",
    "2026-11-25T10:00:00Z",
    "3600s",
    "1296001s",
    "READ",
    "IS_TYPING",
    "TRANSACTION",
    "MEDIUM",
    "true",
    "",
];

/// Any JSON value, nested at most 6 deep, with object keys and strings drawn often from the
/// ones validation looks at.
fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        regex("\\PC{0,30}").prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        select(STRINGS).prop_map(Value::from),
    ];
    let key = prop_oneof![3 => select(KEYS).prop_map(String::from), 1 => regex("[a-zA-Z]{0,10}")].boxed();
    leaf.prop_recursive(6, 128, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((key.clone(), inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Every subtree of `v`, as paths.
fn subtrees(v: &Value, steps: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(steps.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                steps.push(Step::Key(k.clone()));
                subtrees(child, steps, out);
                steps.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                subtrees(child, steps, out);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// JSON equality, except that a number may be one unit in the last place (ULP) off: without
/// serde_json's `float_roundtrip`, its float parser is not correctly rounded, a leniency
/// `validate.rs` documents. Anything more is a difference.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => {
                x == y
                    || (x.is_sign_positive() == y.is_sign_positive()
                        && x.to_bits().abs_diff(y.to_bits()) <= 1)
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// What the relay does with an accepted body, checked: our fields are split off, the rest is
/// relayed as `relayed_json` (within 250 KB, the same JSON as `agent_message`), and the
/// relayed message validates again, to the same request, once our fields are back.
fn check_accepted(req: &SendRequest, body: &Value) {
    for ours in ["phoneNumber", "messageId", "agentId", "statusCallback"] {
        assert!(!req.agent_message.contains_key(ours), "{ours} relayed");
    }
    assert!(req.relayed_json.len() <= MAX_BODY_BYTES);
    assert_eq!(req.relayed_json, Value::Object(req.agent_message.clone()).to_string());
    let mut again = req.agent_message.clone();
    again.insert("phoneNumber".into(), req.phone_number.clone().into());
    for (k, v) in
        [("messageId", &req.message_id), ("agentId", &req.agent_id), ("statusCallback", &req.status_callback)]
    {
        if let Some(v) = v {
            again.insert(k.into(), v.clone().into());
        }
    }
    let again = Value::Object(again);
    if bytes(&again).len() <= MAX_BODY_BYTES {
        let again = validate_send(&bytes(&again)).unwrap_or_else(|e| panic!("re-validation of {body}: {e}"));
        assert_eq!(
            (&again.phone_number, &again.message_id, &again.agent_id, &again.status_callback),
            (&req.phone_number, &req.message_id, &req.agent_id, &req.status_callback)
        );
        let (a, b) = (Value::Object(again.agent_message), Value::Object(req.agent_message.clone()));
        assert!(same_json(&a, &b), "re-validation of {body} relays\n{a}\ninstead of\n{b}");
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every documented shape within its limits is accepted, and relayed exactly as sent.
    #[test]
    fn accepts_valid_messages((ours, message) in valid_request()) {
        let body = body_of(&ours, &message);
        let raw = bytes(&body);
        match validate_send(&raw) {
            Ok(req) => {
                // Relayed as sent (numbers to within one ULP, see `same_json`).
                let relayed: Value = serde_json::from_str(&req.relayed_json)
                    .map_err(|e| TestCaseError::fail(format!("relayed_json: {e}")))?;
                prop_assert!(same_json(&relayed, &message), "relayed\n{}\ninstead of\n{}", relayed, message);
                prop_assert!(same_json(&Value::Object(req.agent_message.clone()), &message));
                let str_field = |k: &str| ours.get(k).and_then(Value::as_str);
                prop_assert_eq!(Some(req.phone_number.as_str()), str_field("phoneNumber"));
                prop_assert_eq!(req.message_id.as_deref(), str_field("messageId"));
                prop_assert_eq!(req.agent_id.as_deref(), str_field("agentId"));
                prop_assert_eq!(req.status_callback.as_deref(), str_field("statusCallback"));
                check_accepted(&req, &body);
            }
            // Limits at their maximum everywhere at once can exceed the 250 KB of a whole
            // message: then (and only then) the body is refused as a whole.
            Err(e) => prop_assert!(raw.len() > MAX_BODY_BYTES && e.path.is_empty(), "refused: {} ({} bytes)\n{}", e, raw.len(), body),
        }
    }

    /// One field one over its limit (a string one character too long, a list one item too
    /// long or too short, a ttl 1 ns over 15 days) is refused with that field's path.
    #[test]
    fn rejects_one_over_limit_with_its_path(
        (ours, message) in valid_request(),
        pick in any::<prop::sample::Index>(),
        fill in select(vec!['a', 'é', '👋']),
    ) {
        let mut sites = Vec::new();
        limits(&message, &mut Vec::new(), &mut sites);
        prop_assert!(!sites.is_empty(), "contentMessage always has a limit");
        let (at, limit) = pick.get(&sites).clone();
        let mut broken = message.clone();
        break_limit(&mut broken, &at, &limit, fill);
        let raw = bytes(&body_of(&ours, &broken));
        let e = validate_send(&raw).expect_err("one over the limit");
        if raw.len() > MAX_BODY_BYTES {
            prop_assert_eq!(e.path, "");
        } else {
            prop_assert_eq!(&e.path, &path_string(&at), "{:?} at {}: {}", limit, path_string(&at), e);
            let words = match limit {
                Limit::AtLeast(_) => "at least",
                _ => "at most",
            };
            prop_assert!(e.message.contains(words), "{}", e);
        }
    }

    /// Our own fields one over their limits, on an otherwise valid message.
    #[test]
    fn rejects_bad_own_fields((ours, message) in valid_request(), which in 0usize..3) {
        let mut ours = ours;
        let (key, value, path) = match which {
            0 => ("phoneNumber", "+1234567890123456".to_string(), "phoneNumber"),
            1 => ("agentId", "a".repeat(129), "agentId"),
            _ => ("statusCallback", format!("https://e.com/{}", "a".repeat(2049 - 14)), "statusCallback"),
        };
        ours.insert(key.into(), value.into());
        let e = validate_send(&bytes(&body_of(&ours, &message))).expect_err("refused");
        prop_assert_eq!(e.path, path);
    }

    /// Never a panic on any JSON value as the body (and, when accepted, the relay's invariants
    /// hold); nor on the same value with a valid phone number added.
    #[test]
    fn never_panics_on_arbitrary_json(value in arb_json(), phone in e164()) {
        for body in [value.clone(), {
            let mut v = value.clone();
            if let Value::Object(m) = &mut v {
                m.insert("phoneNumber".into(), phone.clone().into());
            }
            v
        }] {
            let raw = bytes(&body);
            match validate_send(&raw) {
                Ok(req) => check_accepted(&req, &body),
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
            let _ = validate_agent_event(&raw);
        }
    }

    /// A valid message with one subtree replaced by arbitrary JSON: never a panic; when still
    /// accepted, the relay's invariants hold.
    #[test]
    fn never_panics_on_mutated_valid_messages(
        (ours, message) in valid_request(),
        pick in any::<prop::sample::Index>(),
        replacement in arb_json(),
    ) {
        let mut body = body_of(&ours, &message);
        let mut paths = Vec::new();
        subtrees(&body, &mut Vec::new(), &mut paths);
        let at = pick.get(&paths).clone();
        if let Some(v) = get_mut(&mut body, &at) {
            *v = replacement;
        }
        let raw = bytes(&body);
        match validate_send(&raw) {
            Ok(req) => check_accepted(&req, &body),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    /// Never a panic on arbitrary bytes, nor on valid bodies truncated or with a byte changed.
    #[test]
    fn never_panics_on_arbitrary_bytes(
        noise in vec(any::<u8>(), 0..512),
        (ours, message) in valid_request(),
        cut in any::<prop::sample::Index>(),
        flip in any::<u8>(),
    ) {
        let _ = validate_send(&noise);
        let _ = validate_agent_event(&noise);
        let raw = bytes(&body_of(&ours, &message));
        let i = cut.index(raw.len().max(1));
        let _ = validate_send(&raw[..i.min(raw.len())]);
        let mut changed = raw.clone();
        if let Some(b) = changed.get_mut(i) {
            *b ^= flip;
        }
        if let Err(e) = validate_send(&changed) {
            prop_assert!(!e.message.is_empty());
        }
        let _ = validate_agent_event(&changed);
    }
}
