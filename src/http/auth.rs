//! Who is calling `/v1/*`: a server with an API key (`API_KEYS`, full access), or a browser
//! with a short-lived scoped token (`core::token`, signed with `TOKEN_SIGNING_KEY`).
//! Both arrive as `Authorization: Bearer …`; API keys are compared in constant time, tokens
//! verified (MAC in constant time, then expiry against the request's clock).

use worker::Request;

use super::Cx;
use crate::core::ct::ct_eq_any;
use crate::core::token::{verify, Claims, Scope};
use crate::error::ApiError;

pub enum Caller {
    ApiKey,
    Token(Claims),
}

/// Shortest `TOKEN_SIGNING_KEY` accepted (HS256 keys should have the hash's 256 bits).
pub const MIN_SIGNING_KEY_LEN: usize = 32;

/// The bearer credential of `req`, if it has an `Authorization: Bearer …` header.
fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get("authorization").ok().flatten()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string()).filter(|t| !t.is_empty())
}

/// Authenticates the request: an API key, else a valid token, else 401.
pub fn caller(req: &Request, cx: &Cx) -> Result<Caller, ApiError> {
    let keys = cx.cfg.api_keys();
    let signing_key = cx.cfg.token_signing_key.as_deref();
    if keys.is_err() && signing_key.is_none() {
        return Err(ApiError::ConfigMissing("API_KEYS"));
    }
    let credential =
        bearer(req).ok_or(ApiError::Unauthorized("Send Authorization: Bearer <API key or token>."))?;
    if let Ok(keys) = keys {
        if ct_eq_any(credential.as_bytes(), keys.iter().map(String::as_str)) {
            return Ok(Caller::ApiKey);
        }
    }
    // Not an API key: a token (three dot-separated parts) if tokens are enabled.
    match signing_key {
        Some(key) if credential.matches('.').count() == 2 => {
            let key = signing_key_bytes(key)?;
            verify(key, &credential, cx.now_ms / 1000)
                .map(Caller::Token)
                .map_err(|e| ApiError::Unauthorized(e.describe()))
        }
        _ => Err(ApiError::Unauthorized("The bearer credential is not valid.")),
    }
}

/// `TOKEN_SIGNING_KEY`'s bytes (its UTF-8 text), refused when too short to be safe.
pub fn signing_key_bytes(key: &str) -> Result<&[u8], ApiError> {
    if key.len() < MIN_SIGNING_KEY_LEN {
        return Err(ApiError::ConfigInvalid(
            "TOKEN_SIGNING_KEY",
            format!("it must be at least {MIN_SIGNING_KEY_LEN} bytes"),
        ));
    }
    Ok(key.as_bytes())
}

impl Caller {
    /// API keys may do anything; a token only what its scope and phone numbers allow.
    pub fn require(&self, scope: Scope, phone_number: Option<&str>) -> Result<(), ApiError> {
        match self {
            Caller::ApiKey => Ok(()),
            Caller::Token(claims) => {
                claims.allows(scope, phone_number).map_err(|d| ApiError::Forbidden(capitalise(&d.describe())))
            }
        }
    }

    /// Like `require`, for a resource whose phone number may be unknown: a token limited to
    /// some numbers may not touch a message whose number it cannot check.
    pub fn require_for(&self, scope: Scope, phone_number: Option<&str>) -> Result<(), ApiError> {
        if let (Caller::Token(c), None) = (self, phone_number) {
            if c.phone_numbers.is_some() {
                return Err(ApiError::Forbidden(
                    "The token is limited to some phone numbers and this message's number is not recorded."
                        .into(),
                ));
            }
        }
        self.require(scope, phone_number)
    }

    /// Routes for servers only (minting tokens, dead letters).
    pub fn require_api_key(&self) -> Result<(), ApiError> {
        match self {
            Caller::ApiKey => Ok(()),
            Caller::Token(_) => {
                Err(ApiError::Forbidden("This route needs an API key; tokens cannot use it.".into()))
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}
