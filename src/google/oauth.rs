//! Service-account OAuth inside the Worker: RS256 via WebCrypto, one access token per isolate.
//!
//! - The PKCS#8 key is imported into WebCrypto once per isolate (importKey is the costly part).
//! - The access token is cached until 5 minutes before it expires.
//! - Concurrent requests that find no token share **one** token request: the first becomes
//!   the fetcher, the others wait on short timers of their own and re-read the cache. They do
//!   not await the fetcher's future: workerd ties I/O to the request that started it, and a
//!   request that only waits on another request's promise is cancelled as "hung".
//! - After RBM answers 401, `invalidate` drops the token so the retry mints a fresh one.

use std::cell::RefCell;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{Delay, Headers};

use crate::config::Config;
use crate::core::jwt::{assemble, token_request_body, usable_until_ms, ServiceAccountKey, TokenResponse};
use crate::core::upstream::relayable;
use crate::error::ApiError;
use crate::runtime::{fetch_with_timeout, request, subtle, FetchError};

const SETTING: &str = "RBM_SERVICE_ACCOUNT_KEY";
/// How often a waiting request re-reads the cache while another request fetches the token.
const WAIT_STEP_MS: u64 = 10;

#[derive(Default)]
struct State {
    signing_key: Option<web_sys::CryptoKey>,
    /// The access token and until when (ms) it is used.
    token: Option<(String, u64)>,
    /// Set while one request fetches a token: when it started (ms).
    fetching_since: Option<u64>,
    /// The outcome of the last fetch that failed, with when it ended (ms): waiters that saw
    /// that fetch start report its error instead of each trying again.
    last_failure: Option<(u64, ApiError)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

enum Next {
    Use(String),
    Fetch,
    Wait,
    Fail(ApiError),
}

/// A bearer token for RBM, from the cache or from the token endpoint.
pub async fn access_token(cfg: &Config, now_ms: u64) -> Result<String, ApiError> {
    let key = cfg.service_account()?;
    let started = now_ms;
    // A fetch is bounded by the timeout; waiting longer than that means its request died.
    let give_up_after = cfg.timeout_ms + 1_000;
    loop {
        let now = crate::runtime::now_ms().max(now_ms);
        let next = STATE.with(|s| {
            let mut s = s.borrow_mut();
            if let Some((token, until)) = &s.token {
                if now < *until {
                    return Next::Use(token.clone());
                }
            }
            if let Some((ended, err)) = &s.last_failure {
                if *ended >= started && s.fetching_since.is_none() {
                    return Next::Fail(err.clone());
                }
            }
            match s.fetching_since {
                Some(since) if now.saturating_sub(since) < give_up_after => Next::Wait,
                _ => {
                    s.fetching_since = Some(now);
                    Next::Fetch
                }
            }
        });
        match next {
            Next::Use(token) => return Ok(token),
            Next::Fail(err) => return Err(err),
            Next::Wait => Delay::from(std::time::Duration::from_millis(WAIT_STEP_MS)).await,
            Next::Fetch => {
                let result = fetch_token(&key, cfg.timeout_ms, now).await;
                let ended = crate::runtime::now_ms();
                STATE.with(|s| {
                    let mut s = s.borrow_mut();
                    s.fetching_since = None;
                    match &result {
                        Ok((token, until)) => {
                            s.token = Some((token.clone(), *until));
                            s.last_failure = None;
                        }
                        Err(e) => s.last_failure = Some((ended, e.clone())),
                    }
                });
                return result.map(|(token, _)| token);
            }
        }
    }
}

/// Drops `token` from the cache (RBM rejected it), unless it was already replaced.
pub fn invalidate(token: &str) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.token.as_ref().is_some_and(|(t, _)| t == token) {
            s.token = None;
        }
    });
}

/// Mints an assertion and exchanges it: the token and until when to use it (ms).
async fn fetch_token(
    key: &ServiceAccountKey,
    timeout_ms: u64,
    now_ms: u64,
) -> Result<(String, u64), ApiError> {
    let signing_input = key.signing_input(now_ms / 1000);
    let signature = sign_rs256(key, signing_input.as_bytes()).await?;
    let assertion = assemble(&signing_input, &signature);

    let headers = Headers::new();
    let _ = headers.set("content-type", "application/x-www-form-urlencoded");
    let token_uri = key.token_uri().to_string();
    let req = request("POST", &token_uri, &headers, Some(&token_request_body(&assertion)))
        .map_err(|_| ApiError::ConfigInvalid(SETTING, "token_uri is not a valid URL".into()))?;
    let resp = match fetch_with_timeout(req, timeout_ms).await {
        Ok(r) => r,
        Err(FetchError::Timeout) => {
            return Err(ApiError::UpstreamTimeout(format!(
                "The OAuth token endpoint {token_uri} did not answer within {timeout_ms} ms."
            )))
        }
        Err(FetchError::Network(why)) => {
            return Err(ApiError::Upstream(format!(
                "The OAuth token endpoint {token_uri} could not be reached: {why}."
            )))
        }
    };
    let status = resp.status_code();
    if !relayable(status) {
        return Err(ApiError::UpstreamInvalid(format!(
            "The OAuth token endpoint {token_uri} answered HTTP {status}, which is not an answer to a token request."
        )));
    }
    let text = resp.text().await;
    if status != 200 {
        // Google answers {"error":"invalid_grant","error_description":"…"}: name the error
        // code only (descriptions can quote the assertion's claims).
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| "no error code".into());
        return Err(ApiError::Upstream(format!(
            "The OAuth token endpoint {token_uri} refused the service account's assertion (HTTP {status}, {code})."
        )));
    }
    let token = TokenResponse::parse(&text).ok_or_else(|| {
        ApiError::Upstream(format!("The OAuth token endpoint {token_uri} answered without an access_token."))
    })?;
    Ok((token.access_token, usable_until_ms(now_ms, token.expires_in)))
}

/// RSASSA-PKCS1-v1_5 / SHA-256 over `data` with the key, imported once per isolate.
async fn sign_rs256(key: &ServiceAccountKey, data: &[u8]) -> Result<Vec<u8>, ApiError> {
    let subtle = subtle().map_err(ApiError::Internal)?;
    let cached = STATE.with(|s| s.borrow().signing_key.clone());
    let crypto_key = match cached {
        Some(k) => k,
        None => {
            let der = key.pkcs8_der().map_err(|e| ApiError::ConfigInvalid(SETTING, e.describe().into()))?;
            let bad_key = |_| {
                ApiError::ConfigInvalid(
                    SETTING,
                    "private_key is not an RSA PKCS#8 key WebCrypto accepts".into(),
                )
            };
            let promise = subtle
                .import_key_with_object(
                    "pkcs8",
                    &js_sys::Uint8Array::from(der.as_slice()),
                    &rs256_algorithm(),
                    false,
                    &js_sys::Array::of1(&"sign".into()),
                )
                .map_err(bad_key)?;
            let k: web_sys::CryptoKey = JsFuture::from(promise).await.map_err(bad_key)?.unchecked_into();
            STATE.with(|s| s.borrow_mut().signing_key = Some(k.clone()));
            k
        }
    };
    let promise = subtle
        .sign_with_object_and_u8_array(&rs256_algorithm(), &crypto_key, data)
        .map_err(|_| ApiError::Internal("WebCrypto refused to sign the OAuth assertion.".into()))?;
    let sig = JsFuture::from(promise)
        .await
        .map_err(|_| ApiError::Internal("WebCrypto failed to sign the OAuth assertion.".into()))?;
    Ok(js_sys::Uint8Array::new(&sig).to_vec())
}

fn rs256_algorithm() -> js_sys::Object {
    let hash = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&hash, &"name".into(), &"SHA-256".into());
    let algo = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&algo, &"name".into(), &"RSASSA-PKCS1-v1_5".into());
    let _ = js_sys::Reflect::set(&algo, &"hash".into(), &hash);
    algo
}
