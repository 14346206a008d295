//! Bearer authentication of `/v1/*` callers against `API_KEYS` (constant-time).

use worker::Request;

use crate::config::Config;
use crate::core::ct::ct_eq_any;
use crate::error::ApiError;

/// The bearer credential of `req`, if it has an `Authorization: Bearer …` header.
pub fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get("authorization").ok().flatten()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Passes when the request carries one of the configured API keys.
pub fn require_api_key(req: &Request, cfg: &Config) -> Result<(), ApiError> {
    let keys = cfg.api_keys()?;
    let token = bearer(req).ok_or(ApiError::Unauthorized(
        "Send Authorization: Bearer <API key>.",
    ))?;
    if ct_eq_any(token.as_bytes(), keys.iter().map(String::as_str)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "The bearer credential is not valid.",
        ))
    }
}
