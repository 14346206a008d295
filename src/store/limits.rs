//! Limits on browser tokens.
//!
//! - Every request: the Rate Limiting binding `TOKEN_RATE_LIMITER` (when bound), keyed per
//!   token (`tok:{jti}`): a leaked token cannot spend the agent's RBM quota on capability
//!   checks or reads either.
//! - Sends: `SEND_RATE_LIMITER` (when bound), keyed per token and per client IP
//!   (`ip:{CF-Connecting-IP}`); exact per location.
//! - Budget (`maxSends`): a counter in the token's own `Conversation` object (`b:{jti}`),
//!   exact under concurrency, deleted a minute after the token expires.

use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

use crate::conversation::client as conversation;
use crate::core::conversation::{budget_name, Op};
use crate::core::token::Claims;
use crate::error::ApiError;

pub const SEND_RATE_LIMITER: &str = "SEND_RATE_LIMITER";
pub const TOKEN_RATE_LIMITER: &str = "TOKEN_RATE_LIMITER";
/// Google's 600 `users.batchGet` queries a minute, shared by every request of the deployment.
pub const RBM_QUERY_LIMITER: &str = "RBM_QUERY_LIMITER";
/// The Rate Limiting binding's period is 10 or 60 s; wrangler.toml sets 60.
const RATE_PERIOD_SECS: u64 = 60;

/// One unit of `limiter` for each key; 429 with Retry-After when any is exhausted.
async fn take(env: &Env, limiter: &str, keys: &[String], what: &str) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter(limiter) else {
        return Ok(()); // not bound: no limit
    };
    // Called directly: `RateLimiter::limit` converts its one-field argument and answer through
    // serde_wasm_bindgen.
    let limiter: &worker::worker_sys::RateLimiter = limiter.as_ref().unchecked_ref();
    let failed = |e: worker::Error| ApiError::StorageUnavailable(format!("The rate limiter failed: {e}."));
    for key in keys {
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &"key".into(), &JsValue::from_str(key));
        let promise = limiter.limit(options).map_err(|e| failed(e.into()))?;
        let outcome = wasm_bindgen_futures::JsFuture::from(promise).await.map_err(|e| failed(e.into()))?;
        let success = js_sys::Reflect::get(&outcome, &"success".into()).ok().and_then(|v| v.as_bool());
        if !success.ok_or_else(|| failed("no outcome".into()))? {
            return Err(ApiError::RateLimited {
                message: format!("Too many {what}; slow down."),
                retry_after_secs: RATE_PERIOD_SECS,
            });
        }
    }
    Ok(())
}

/// Takes `calls` of Google's per-minute `users.batchGet` quota, before any is made: a request
/// is answered whole or refused whole (429), never cut short by the quota halfway.
pub async fn take_rbm_queries(env: &Env, calls: usize) -> Result<(), ApiError> {
    let keys = vec!["users.batchGet".to_string(); calls];
    take(env, RBM_QUERY_LIMITER, &keys, "users.batchGet queries this minute (Google allows 600)").await
}

/// Counts one request made with a token.
pub async fn take_request(env: &Env, claims: &Claims) -> Result<(), ApiError> {
    take(env, TOKEN_RATE_LIMITER, &[format!("tok:{}", claims.jti)], "requests with this token").await
}

/// Checks and consumes one send for a token caller: 429 with Retry-After when rate limited,
/// 403 `BUDGET_EXHAUSTED` once `maxSends` is used up.
pub async fn take_send(
    env: &Env,
    claims: &Claims,
    client_ip: Option<&str>,
    now_secs: u64,
    units: u32,
) -> Result<(), ApiError> {
    let mut keys = vec![format!("tok:{}", claims.jti)];
    if let Some(ip) = client_ip {
        keys.push(format!("ip:{ip}"));
    }
    take(env, SEND_RATE_LIMITER, &keys, "sends with this token").await?;
    let Some(max) = claims.max_sends else {
        return Ok(());
    };
    // Counted in the token's own Durable Object: exact, however many sends race.
    let op = Op::TakeSend { max, units, expires_at_ms: (claims.exp.max(now_secs) + 60) * 1000 };
    let answer = conversation::op(env, &budget_name(&claims.jti), &op).await?;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    if answer["ok"] == true {
        Ok(())
    } else {
        Err(ApiError::BudgetExhausted(max))
    }
}
