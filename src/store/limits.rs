//! Limits on browser-token sends.
//!
//! - Rate: the Workers Rate Limiting binding `SEND_RATE_LIMITER` (when bound), keyed per
//!   token (`tok:{jti}`) and per client IP (`ip:{CF-Connecting-IP}`); exact per location.
//! - Budget (`maxSends`): a KV counter `budget:{jti}` in the `STATUS` namespace, expiring
//!   with the token. KV has no atomic increment, so concurrent sends with one token can
//!   overshoot the budget by the number racing (documented approximation; a Durable Object
//!   would make it exact).

use worker::Env;

use crate::core::token::Claims;
use crate::error::ApiError;
use crate::store::status::BINDING;

pub const RATE_LIMITER: &str = "SEND_RATE_LIMITER";
/// The Rate Limiting binding's period is 10 or 60 s; wrangler.toml sets 60.
const RATE_PERIOD_SECS: u64 = 60;

/// Checks and consumes one send for a token caller; 429 with Retry-After when limited.
pub async fn take_send(
    env: &Env,
    claims: &Claims,
    client_ip: Option<&str>,
    now_secs: u64,
) -> Result<(), ApiError> {
    if let Ok(limiter) = env.rate_limiter(RATE_LIMITER) {
        let mut keys = vec![format!("tok:{}", claims.jti)];
        if let Some(ip) = client_ip {
            keys.push(format!("ip:{ip}"));
        }
        for key in keys {
            let outcome = limiter
                .limit(key)
                .await
                .map_err(|e| ApiError::StorageUnavailable(format!("The rate limiter failed: {e}.")))?;
            if !outcome.success {
                return Err(ApiError::RateLimited {
                    message: "Too many sends; slow down.".into(),
                    retry_after_secs: RATE_PERIOD_SECS,
                });
            }
        }
    }
    let Some(max) = claims.max_sends else {
        return Ok(());
    };
    let kv = env.kv(BINDING).map_err(|_| ApiError::ConfigMissing(BINDING))?;
    let key = format!("budget:{}", claims.jti);
    let unavailable = |e: worker::kv::KvError| {
        ApiError::StorageUnavailable(format!("The send budget could not be checked: {e}."))
    };
    let used: u32 = kv.get(&key).text().await.map_err(unavailable)?.and_then(|t| t.parse().ok()).unwrap_or(0);
    if used >= max {
        return Err(ApiError::RateLimited {
            message: format!("The token's send budget of {max} is used up."),
            retry_after_secs: claims.exp.saturating_sub(now_secs).max(1),
        });
    }
    // Absolute expiry a minute after the token's own (KV needs it ≥ 60 s in the future).
    let expires = claims.exp.max(now_secs) + 60;
    kv.put(&key, (used + 1).to_string())
        .map_err(unavailable)?
        .expiration(expires)
        .execute()
        .await
        .map_err(unavailable)
}
