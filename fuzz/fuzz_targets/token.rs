//! Browser tokens (`token.rs`) with a fixed key. The first byte picks what the rest is:
//! - `'0'` (or any byte ≡ 0 mod 3): a token string, verified as sent;
//! - `'1'`: header JSON, a newline, claims JSON: signed with the key, then verified, so the
//!   claim checks are reached (a fuzzer cannot forge the MAC);
//! - `'2'`: a `POST /v1/tokens` body for `claims_from_request`.
//!
//! Invariants: no panic; a verified token's claims obey the documented rules, and minting
//! them again gives a token that verifies to the same claims; a valid mint request's token
//! verifies to its claims.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use rbm_edge::core::token::{claims_from_request, mint, verify, Claims, Scope, TokenError, MAX_TTL_SECS};
use rbm_edge::core::ids::is_e164;
use sha2::Sha256;

const KEY: &[u8] = b"test-signing-key-0123456789abcdef";
const NOW: u64 = 1_767_225_610;

fn forge(header: &str, claims: &str) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn check_claims(c: &Claims) {
    assert!((1..=64).contains(&c.jti.len()));
    assert!(c.jti.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    assert!(!c.scopes.is_empty());
    for (i, s) in c.scopes.iter().enumerate() {
        assert!(!c.scopes[..i].contains(s), "scopes deduplicated");
        assert_eq!(Scope::parse(s.as_str()), Some(*s));
    }
    if let Some(numbers) = &c.phone_numbers {
        assert!(!numbers.is_empty() && numbers.iter().all(|n| is_e164(n)));
    }
    assert!(c.iat <= c.exp && c.exp - c.iat <= MAX_TTL_SECS);
    let _ = c.allows(Scope::MessagesSend, Some("+14155550123"));
}

fn check_token(token: &str) {
    match verify(KEY, token, NOW) {
        Ok(c) => {
            assert!(c.exp > NOW && c.iat <= NOW + 60);
            check_claims(&c);
            assert_eq!(verify(KEY, &mint(KEY, &c), NOW), Ok(c.clone()), "re-minted token");
            assert_eq!(verify(b"another key", token, NOW), Err(TokenError::BadSignature));
        }
        Err(e) => assert!(!e.describe().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match mode % 3 {
        0 => check_token(&text),
        1 => {
            let (header, claims) = text.split_once('\n').unwrap_or((r#"{"alg":"HS256","typ":"JWT"}"#, &text));
            check_token(&forge(header, claims));
        }
        _ => match claims_from_request(rest, "tok_fuzz".into(), NOW, Some("fuzz_agent")) {
            Ok(c) => {
                assert_eq!((c.iat, c.jti.as_str()), (NOW, "tok_fuzz"));
                check_claims(&c);
                let token = mint(KEY, &c);
                assert_eq!(verify(KEY, &token, NOW), Ok(c), "a minted token verifies: {token}");
            }
            Err(e) => assert!(!e.message.is_empty()),
        },
    }
});
