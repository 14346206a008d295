//! Service-account key handling (`jwt.rs`) on arbitrary strings: `ServiceAccountKey::parse`,
//! `pkcs8_der`, `signing_input`, and Google's token answer (`usable_until_ms`).
//!
//! Invariants: no panic; a parsed key has a non-empty email and key and an http(s) token URI;
//! the signing input is two base64url parts whose JSON names the key's email, id and token
//! URI; key errors never echo key material; a token answer's `expires_in` gives an end of use
//! that is not before now.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rbm_edge::core::jwt::{
    assemble, token_request_body, usable_until_ms, ServiceAccountKey, TokenResponse, RBM_SCOPE,
};
use serde_json::Value;

const NOW_SECS: u64 = 1_767_225_600;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    match ServiceAccountKey::parse(text) {
        Ok(key) => {
            assert!(!key.client_email.trim().is_empty());
            assert!(!key.private_key.trim().is_empty());
            let uri = key.token_uri();
            assert!(uri.starts_with("https://") || uri.starts_with("http://"));
            match key.pkcs8_der() {
                Ok(der) => assert!(der.len() <= key.private_key.len()),
                Err(e) => assert!(!e.describe().is_empty()),
            }
            let input = key.signing_input(NOW_SECS);
            let (h, c) = input.split_once('.').expect("two parts");
            let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64url")).expect("json");
            let c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).expect("b64url")).expect("json");
            assert_eq!(h["alg"], "RS256");
            assert_eq!(h.get("kid").and_then(Value::as_str), key.private_key_id.as_deref());
            assert_eq!(c["iss"].as_str(), Some(key.client_email.as_str()));
            assert_eq!(c["aud"].as_str(), Some(uri));
            assert_eq!(c["scope"], RBM_SCOPE);
            assert_eq!(c["exp"].as_u64(), Some(NOW_SECS + 3600));
            let jwt = assemble(&input, data);
            assert_eq!(jwt.matches('.').count(), 2);
            assert!(token_request_body(&jwt).ends_with(&jwt));
        }
        Err(e) => assert!(!e.describe().is_empty()),
    }

    if let Some(answer) = TokenResponse::parse(text) {
        // The cached token's end of use: never before now, whatever Google says.
        let until = usable_until_ms(NOW_SECS * 1000, answer.expires_in);
        assert!(until >= NOW_SECS * 1000, "expires_in {} → {until}", answer.expires_in);
    }
});
