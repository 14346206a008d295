//! The RBM REST calls, relayed with the isolate's access token. RBM's synchronous answer
//! (status + JSON body) is returned as is; only transport failures become our errors.

use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{Headers, Method};

use super::oauth;
use crate::config::Config;
use crate::core::outbound::url_origin;
use crate::core::upstream::relayable;
use crate::error::ApiError;
use crate::runtime::{fetch_with_timeout, request_js, FetchError};

/// RBM's answer: its HTTP status and its body (JSON, or the text when it is not JSON).
pub struct RbmAnswer {
    pub status: u16,
    pub body: Value,
    /// RBM's `Retry-After` (on 429 / 503), passed on to the caller.
    pub retry_after: Option<String>,
}

impl RbmAnswer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Our answer to the caller: RBM's status (and `Retry-After`) with `body`.
    pub fn respond(&self, body: &Value) -> worker::Response {
        let mut resp = crate::error::json_response(self.status, body);
        if let Some(ra) = &self.retry_after {
            let _ = resp.headers_mut().set("retry-after", ra);
        }
        resp
    }
}

/// `/v1/phones/{E.164}` with the `+` escaped (the only character of an E.164 number that
/// needs it in a path).
pub fn phone_path(phone: &str) -> String {
    format!("/v1/phones/{}", phone.replace('+', "%2B"))
}

/// Calls RBM at `base` (`Config::api_base_for` the agent, or a region's host). A 401 (token
/// revoked or expired early) refreshes the token and retries once.
pub async fn call(
    cfg: &Config,
    now_ms: u64,
    base: &str,
    method: Method,
    path_and_query: &str,
    body: Option<&str>,
) -> Result<RbmAnswer, ApiError> {
    let url = format!("{base}{path_and_query}");
    let body = body.map(JsValue::from_str);
    let json = body.as_ref().map(|b| (b, "application/json; charset=utf-8"));
    let mut token = oauth::access_token(cfg, now_ms).await?;
    let mut answer = send(&token, method.as_ref(), &url, json, cfg.timeout_ms).await?;
    if answer.status == 401 {
        oauth::invalidate(&token);
        token = oauth::access_token(cfg, now_ms).await?;
        answer = send(&token, method.as_ref(), &url, json, cfg.timeout_ms).await?;
    }
    Ok(answer)
}

/// A media upload can take minutes (100 MiB from a slow client); `RBM_TIMEOUT_MS` is sized
/// for JSON calls.
const UPLOAD_TIMEOUT_MS: u64 = 300_000;

/// POSTs `stream` (the caller's body, read as it is sent) to RBM's media upload URI. Not
/// retried on a 401: the stream is spent, so the caller gets RBM's answer and may resend.
pub async fn upload(
    cfg: &Config,
    now_ms: u64,
    base: &str,
    path_and_query: &str,
    content_type: &str,
    stream: &JsValue,
) -> Result<RbmAnswer, ApiError> {
    let token = oauth::access_token(cfg, now_ms).await?;
    let url = format!("{base}{path_and_query}");
    let answer = send(&token, "POST", &url, Some((stream, content_type)), UPLOAD_TIMEOUT_MS).await?;
    if answer.status == 401 {
        oauth::invalidate(&token);
    }
    Ok(answer)
}

async fn send(
    token: &str,
    method: &str,
    url: &str,
    body: Option<(&JsValue, &str)>,
    timeout_ms: u64,
) -> Result<RbmAnswer, ApiError> {
    let headers = Headers::new();
    let _ = headers.set("authorization", &format!("Bearer {token}"));
    let _ = headers.set("accept", "application/json");
    if let Some((_, content_type)) = body {
        let _ = headers.set("content-type", content_type);
    }
    // A redirect is answered as such (502 UPSTREAM_INVALID), never followed with our token.
    let req = request_js(method, url, &headers, body.map(|(b, _)| b)).map_err(|_| {
        ApiError::ConfigInvalid("RBM_API_BASE", format!("{} does not make a valid URL", url_origin(url)))
    })?;
    let resp = match fetch_with_timeout(req, timeout_ms).await {
        Ok(r) => r,
        Err(FetchError::Timeout) => {
            return Err(ApiError::UpstreamTimeout(format!("RBM did not answer within {timeout_ms} ms.")))
        }
        Err(FetchError::Network(why)) => {
            return Err(ApiError::Upstream(format!("RBM could not be reached: {why}.")))
        }
    };
    let status = resp.status_code();
    if !relayable(status) {
        // No body is read: a null-body status has none, and reading it is what hung.
        return Err(ApiError::UpstreamInvalid(format!(
            "RBM answered HTTP {status}, which cannot be relayed (expected 200-599 with a JSON body)."
        )));
    }
    let retry_after = resp.header("retry-after");
    let text = resp.text().await;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok(RbmAnswer { status, body, retry_after })
}
