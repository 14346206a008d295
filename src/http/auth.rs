//! Who is calling `/v1/*`: a server with an API key (`API_KEYS`, full access), or a browser
//! with a short-lived scoped token (`core::token`, signed with `TOKEN_SIGNING_KEY`).
//! Both arrive as `Authorization: Bearer …`; API keys are compared in constant time, tokens
//! verified (MAC in constant time, then expiry against the request's clock).

use super::Request;

use super::Cx;
use crate::core::ct::ct_eq_any;
use crate::core::token::{verify, Claims, Scope};
use crate::error::ApiError;

pub enum Caller {
    ApiKey,
    Token(Claims),
}

/// The bearer credential of `req`, if it has an `Authorization: Bearer …` header.
fn bearer(req: &Request) -> Option<String> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string()).filter(|t| !t.is_empty())
}

/// Authenticates the request: an API key, else a valid token, else 401.
pub fn caller(req: &Request, cx: &Cx) -> Result<Caller, ApiError> {
    authenticate(bearer(req), cx)
}

/// The credential a WebSocket client offers as a subprotocol (`bearer.<token or key>`, next to
/// `rbm-edge.v1`): browsers cannot set headers on a WebSocket, and credentials never go in URLs.
pub fn subprotocol_credential(req: &Request) -> Option<String> {
    let offered = req.header("sec-websocket-protocol")?;
    let mut protocols = offered.split(',').map(str::trim);
    if !offered.split(',').any(|p| p.trim() == crate::conversation::PROTOCOL) {
        return None;
    }
    protocols.find_map(|p| p.strip_prefix("bearer.")).map(String::from).filter(|c| !c.is_empty())
}

/// Authenticates a credential: an API key, else a valid token, else 401.
pub fn authenticate(credential: Option<String>, cx: &Cx) -> Result<Caller, ApiError> {
    let keys = cx.cfg.api_keys();
    let signing_key = cx.cfg.token_key();
    if keys.is_err() && signing_key.is_none() {
        return Err(ApiError::ConfigMissing("API_KEYS"));
    }
    let credential =
        credential.ok_or(ApiError::Unauthorized("Send Authorization: Bearer <API key or token>."))?;
    if let Ok(keys) = keys {
        if ct_eq_any(credential.as_bytes(), keys.iter().map(String::as_str)) {
            return Ok(Caller::ApiKey);
        }
    }
    // Not an API key: a token (three dot-separated parts) if tokens are enabled.
    match signing_key {
        Some(key) if credential.matches('.').count() == 2 => verify(key?, &credential, cx.now_ms / 1000)
            .map(Caller::Token)
            .map_err(|e| ApiError::Unauthorized(e.describe())),
        _ => Err(ApiError::Unauthorized("The bearer credential is not valid.")),
    }
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

    /// A token acts for one agent (its `agent_id`, else `RBM_AGENT_ID`); API keys for any.
    pub fn require_agent(&self, agent: &str, cx: &Cx) -> Result<(), ApiError> {
        match self {
            Caller::ApiKey => Ok(()),
            Caller::Token(claims) => claims
                .allows_agent(agent, cx.cfg.agent_id.as_deref())
                .map_err(|d| ApiError::Forbidden(capitalise(&d.describe()))),
        }
    }

    pub fn is_token(&self) -> bool {
        matches!(self, Caller::Token(_))
    }

    /// Routes for servers only (minting tokens, erasing conversations).
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
