//! The RBM REST calls, relayed with the isolate's access token. RBM's synchronous answer
//! (status + JSON body) is returned as is; only transport failures become our errors.

use serde_json::Value;
use worker::{Headers, Method};

use super::oauth;
use crate::config::Config;
use crate::core::upstream::relayable;
use crate::error::ApiError;
use crate::runtime::{fetch_with_timeout, request, FetchError};

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

/// Calls RBM. A 401 (token revoked or expired early) refreshes the token and retries once.
pub async fn call(
    cfg: &Config,
    now_ms: u64,
    method: Method,
    path_and_query: &str,
    body: Option<&str>,
) -> Result<RbmAnswer, ApiError> {
    let mut token = oauth::access_token(cfg, now_ms).await?;
    let mut answer = send(cfg, &token, method.clone(), path_and_query, body).await?;
    if answer.status == 401 {
        oauth::invalidate(&token);
        token = oauth::access_token(cfg, now_ms).await?;
        answer = send(cfg, &token, method, path_and_query, body).await?;
    }
    Ok(answer)
}

async fn send(
    cfg: &Config,
    token: &str,
    method: Method,
    path_and_query: &str,
    body: Option<&str>,
) -> Result<RbmAnswer, ApiError> {
    let headers = Headers::new();
    let _ = headers.set("authorization", &format!("Bearer {token}"));
    let _ = headers.set("accept", "application/json");
    if body.is_some() {
        let _ = headers.set("content-type", "application/json; charset=utf-8");
    }
    // A redirect is answered as such (502 UPSTREAM_INVALID), never followed with our token.
    let url = format!("{}{}", cfg.api_base, path_and_query);
    let req = request(method.as_ref(), &url, &headers, body)
        .map_err(|_| ApiError::ConfigInvalid("RBM_API_BASE", "it does not make a valid URL".into()))?;
    let mut resp = match fetch_with_timeout(req, cfg.timeout_ms).await {
        Ok(r) => r,
        Err(FetchError::Timeout) => {
            return Err(ApiError::UpstreamTimeout(format!(
                "RBM did not answer within {} ms (RBM_TIMEOUT_MS).",
                cfg.timeout_ms
            )))
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
    let retry_after = resp.headers().get("retry-after").ok().flatten();
    let text = resp.text().await.unwrap_or_default();
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok(RbmAnswer { status, body, retry_after })
}
