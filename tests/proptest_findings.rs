//! Regression tests for what the fuzzers and property tests found in `src/core` (issue 6),
//! written as reproducers first and kept once fixed. Each test states the invariant the code
//! promises, on the input that broke it and, where cheap, as a property.

use proptest::prelude::*;
use rbm_edge::core::jwt::usable_until_ms;
use rbm_edge::core::status::{RecordMeta, Source};
use rbm_edge::core::token::{claims_from_request, mint, verify, MAX_PHONE_NUMBERS};
use rbm_edge::core::validate::{validate_send, MAX_BODY_BYTES};
use serde_json::Value;

/// Cloudflare KV's limit on a key's metadata: 1024 bytes of serialized JSON.
const KV_METADATA_LIMIT: usize = 1024;

fn webhook_meta(event_id: &str, phone_number: &str, agent_id: &str) -> RecordMeta {
    RecordMeta {
        at: "2018-12-31T15:01:23.045123456Z".into(),
        received_at: "2018-12-31T15:01:24.000Z".into(),
        source: Source::Webhook,
        event_id: Some(event_id.into()),
        phone_number: Some(phone_number.into()),
        agent_id: Some(agent_id.into()),
        http_status: None,
        fallback: None,
    }
}

/// `RecordMeta::bounded` promises that "a hostile or odd value can never make the KV write
/// fail". It bounded each field's *bytes* (200), not its *serialized* size: `"`, `\` and
/// control characters are escaped (2 to 6 bytes each), so three 200-byte fields of a signed
/// RBM event made metadata of over 2 KB, the KV write failed, and RBM would retry the event
/// for 7 days. (Found by the `status` fuzz target: an eventId of ~190 U+0000 → 1102 bytes.)
#[test]
fn bounded_metadata_fits_kv_even_with_escaped_characters() {
    for (e, p, a) in [
        ("\u{0}".repeat(200), "\"".repeat(200), "\\".repeat(200)),
        ("\u{1}".repeat(200), "+12223334444".into(), "AGENT_ID".into()),
        ("18-12-".to_string() + &"\u{0}".repeat(190), "+1".into(), "a".into()),
    ] {
        let meta = webhook_meta(&e, &p, &a).bounded();
        let json = serde_json::to_string(&meta).unwrap_or_default();
        assert!(json.len() <= KV_METADATA_LIMIT, "{} bytes of metadata: {json}", json.len());
    }
}

/// A metadata field: up to 200 bytes of one character repeated, often one JSON escapes.
fn field() -> impl Strategy<Value = String> {
    let c =
        prop_oneof![Just('a'), Just('"'), Just('\\'), Just('\n'), Just('\u{0}'), Just('\u{1f}'), Just('é')];
    (c, 0usize..=200).prop_map(|(c, n)| c.to_string().repeat(n / c.len_utf8()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same, for any fields of up to 200 bytes (what `bounded` keeps), mixing plain and
    /// escaped characters.
    #[test]
    fn bounded_metadata_always_fits_kv(fields in proptest::collection::vec(field(), 3)) {
        let json = serde_json::to_string(&webhook_meta(&fields[0], &fields[1], &fields[2]).bounded())
            .unwrap_or_default();
        prop_assert!(json.len() <= KV_METADATA_LIMIT, "{} bytes: {}", json.len(), json);
    }
}

/// `POST /v1/tokens` (body up to 16 KiB) accepted any number of `phoneNumbers`, but `verify`
/// refuses tokens over `MAX_TOKEN_LEN` (4096 bytes) as malformed: with about 190 numbers the
/// Worker minted a token it would itself never accept.
#[test]
fn a_minted_token_verifies_whatever_the_request_allowed() {
    let numbers: Vec<String> = (0..200).map(|i| format!("\"+1415555{i:04}\"")).collect();
    let body = format!(r#"{{"scopes":["messages:send"],"phoneNumbers":[{}]}}"#, numbers.join(","));
    assert!(body.len() < 16 * 1024);
    let now = 1_767_225_600;
    let result = claims_from_request(
        body.as_bytes(),
        "123e4567-e89b-12d3-a456-426614174000".into(),
        now,
        Some("my_agent"),
    );
    // Either the request is refused (a limit on phoneNumbers, at that path) or its token works.
    match result {
        Ok(claims) => {
            let token = mint(b"k", &claims);
            let verified = verify(b"k", &token, now).map(|c| c.phone_numbers.map(|n| n.len()));
            assert_eq!(verified, Ok(Some(200)), "{} bytes", token.len());
        }
        Err(e) => assert_eq!(e.path, "phoneNumbers", "{e}"),
    }
}

/// The relay promises the AgentMessage is "relayed verbatim", but it is parsed into
/// `serde_json::Value` and re-serialised: numbers were re-formatted (`1e9` →
/// `1000000000.0`), so a body under the 250 KB limit could be relayed as one over it. Floats
/// go through serde_json's parser, which without `float_roundtrip` is not correctly rounded:
/// a longitude of 97.42831140333153 is relayed as 97.42831140333152. `validate.rs` documents
/// that as a leniency of at most one unit in the last place; this checks that bound.
#[test]
fn relayed_numbers_keep_their_value_and_size() {
    let sent = 97.428_311_403_331_53_f64;
    let body = format!(
        r#"{{"phoneNumber":"+12223334444","contentMessage":{{"text":"Hi","suggestions":[{{"action":{{"text":"Map","postbackData":"m","viewLocationAction":{{"latLong":{{"latitude":0.0,"longitude":{sent}}}}}}}}}]}}}}"#
    );
    assert!(body.contains("97.42831140333153"));
    let req = validate_send(body.as_bytes()).expect("valid");
    assert_eq!(req.relayed_json, Value::Object(req.agent_message.clone()).to_string());
    let relayed: Value = serde_json::from_str(&req.relayed_json).expect("relayed JSON");
    let longitude = relayed
        .pointer("/contentMessage/suggestions/0/action/viewLocationAction/latLong/longitude")
        .and_then(Value::as_f64)
        .expect("longitude relayed");
    // The text relayed, parsed exactly (Rust's own parser is correctly rounded).
    let relayed_text = req.relayed_json.split("\"longitude\":").nth(1).and_then(|t| t.split('}').next());
    let exact: Option<f64> = relayed_text.and_then(|t| t.parse().ok());
    assert!(
        exact.is_some_and(|x| x.to_bits().abs_diff(sent.to_bits()) <= 1),
        "relayed {relayed_text:?} for {sent}"
    );
    assert!(longitude.to_bits().abs_diff(sent.to_bits()) <= 1, "{longitude} for {sent}");

    let mut big = String::from(r#"{"phoneNumber":"+12223334444","contentMessage":{"text":"Hi"},"n":["#);
    while big.len() < MAX_BODY_BYTES - 8 {
        big.push_str("1e9,");
    }
    big.push_str("1e9]}");
    assert!(big.len() <= MAX_BODY_BYTES);
    // Either refused as a whole, or relayed within the limit.
    match validate_send(big.as_bytes()) {
        Ok(req) => {
            assert!(req.relayed_json.len() <= MAX_BODY_BYTES, "relayed as {} bytes", req.relayed_json.len())
        }
        Err(e) => assert_eq!(e.path, "", "{e}"),
    }
}

/// Google's token answer sets `expires_in`; `usable_until_ms` multiplied it by 1000 and added
/// it unchecked: an absurd value panicked in debug builds ("attempt to multiply with
/// overflow") and wrapped in release builds (a cached token's expiry in the past or the far
/// future).
#[test]
fn token_lifetime_arithmetic_does_not_overflow() {
    let now = 1_767_225_600_000;
    for expires_in in [u64::MAX, u64::MAX / 1000, 18_446_744_073_709_552] {
        let until = std::panic::catch_unwind(|| usable_until_ms(now, expires_in));
        assert!(matches!(until, Ok(t) if t >= now), "expires_in {expires_in}: {until:?}");
    }
}

fn mint_request() -> impl Strategy<Value = (Value, usize)> {
    let scopes = proptest::sample::subsequence(
        vec!["messages:send", "messages:read", "events:send", "capabilities:read"],
        1..=4,
    );
    // The longest E.164 numbers, as many as allowed: the longest token there can be.
    let numbers = proptest::option::of(proptest::collection::vec("\\+[1-9][0-9]{14}", 1..=MAX_PHONE_NUMBERS));
    (scopes, numbers, proptest::option::of(1u64..=3600), proptest::option::of(any::<u32>())).prop_map(
        |(scopes, numbers, ttl, max_sends)| {
            let n = numbers.as_ref().map_or(0, Vec::len);
            let mut body = serde_json::json!({"scopes": scopes});
            if let Some(numbers) = numbers {
                body["phoneNumbers"] = numbers.into();
            }
            if let Some(ttl) = ttl {
                body["ttlSeconds"] = ttl.into();
            }
            if let Some(m) = max_sends {
                body["maxSends"] = m.into();
            }
            (body, n)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every token request `POST /v1/tokens` accepts gives a token that verifies to its claims.
    #[test]
    fn every_accepted_mint_request_gives_a_token_that_verifies((body, n) in mint_request()) {
        let now = 1_767_225_600;
        let jti = "123e4567-e89b-12d3-a456-426614174000".to_string();
        let claims = claims_from_request(body.to_string().as_bytes(), jti, now, Some("my_agent"))
            .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(claims.phone_numbers.as_ref().map_or(0, Vec::len), n);
        let token = mint(b"test-signing-key-0123456789abcdef", &claims);
        prop_assert_eq!(verify(b"test-signing-key-0123456789abcdef", &token, now), Ok(claims), "{} bytes", token.len());
    }
}
