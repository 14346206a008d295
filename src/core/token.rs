//! Short-lived, scoped tokens for browsers, which must never hold an API key.
//!
//! A business backend (or our `POST /v1/tokens`) mints a token with the shared secret
//! `TOKEN_SIGNING_KEY`; the Worker verifies it and then checks each request against the
//! token's scopes and phone numbers. The format is a compact **HS256 JWT** (RFC 7519), so a
//! backend can mint with any JWT library (jose, PyJWT, jsonwebtoken) instead of our code.
//!
//! What verification insists on, and why:
//! - `alg` must be `HS256`. `none`, `RS256` and anything else are refused before any key is
//!   used, which closes the alg-confusion attacks (an unsigned token, or a public key
//!   reused as an HMAC secret). `typ` is optional and not checked; a `crit` header is
//!   refused, as RFC 7515 requires for extensions we do not understand.
//! - The MAC is compared in constant time **before** the claims are parsed, so nothing an
//!   attacker writes into the payload reaches the JSON parser unauthenticated.
//! - A token lives at most [`MAX_TTL_SECS`] (`exp - iat`), is valid while `now < exp`, and
//!   may be issued up to [`CLOCK_SKEW_SECS`] in the future (the minting backend's clock may
//!   run ahead of Cloudflare's). A standard `nbf`, if present, is honoured with the same
//!   allowance.
//! - Claims: `iat`, `exp` (integer seconds), `jti` (1 to 64 of `[A-Za-z0-9_-]`), `aud`
//!   (`"rbm-edge"`, or an array containing it: a token minted for another service is never
//!   taken for ours) and `scope` (space-separated, at least one of [`Scope`]) are required;
//!   `agent_id` (the one RBM agent the token may act for; absent means the deployment's
//!   default agent), `phone_numbers` (E.164, at least one; absent means any number) and
//!   `max_sends` are optional; other claims (`sub`, `iss`, ...) are ignored.
//!
//! [`mint`] writes the header `{"alg":"HS256","typ":"JWT"}` and the claims in a fixed order,
//! `iat, exp, jti, aud, scope, agent_id, phone_numbers, max_sends` (absent ones omitted), so
//! its output is reproducible byte for byte.
//!
//! # Worked example
//!
//! Key (the UTF-8 bytes of) `test-signing-key-0123456789abcdef`, claims:
//!
//! ```text
//! {"iat":1767225600,"exp":1767226500,"jti":"tok_01HZX3K9Q7","aud":"rbm-edge","scope":"messages:send messages:read","agent_id":"my_agent","phone_numbers":["+14155550123"],"max_sends":10}
//! ```
//!
//! (issued 2026-01-01T00:00:00Z, valid 15 minutes, acts for agent `my_agent` only, may send at
//! most 10 messages, only to +14155550123, and read their status) gives the token
//!
//! ```text
//! eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3NjcyMjU2MDAsImV4cCI6MTc2NzIyNjUwMCwianRpIjoidG9rXzAxSFpYM0s5UTciLCJhdWQiOiJyYm0tZWRnZSIsInNjb3BlIjoibWVzc2FnZXM6c2VuZCBtZXNzYWdlczpyZWFkIiwiYWdlbnRfaWQiOiJteV9hZ2VudCIsInBob25lX251bWJlcnMiOlsiKzE0MTU1NTUwMTIzIl0sIm1heF9zZW5kcyI6MTB9.5JPyQTAP71INjO3eEwfR_3pJ5w_7uRR4RXzUYyyzPk4
//! ```
//!
//! which anyone can reproduce with a shell and OpenSSL:
//!
//! ```text
//! b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
//! H=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
//! P=$(printf '%s' '<the claims above>' | b64url)
//! S=$(printf '%s' "$H.$P" | openssl dgst -sha256 -mac HMAC \
//!       -macopt key:test-signing-key-0123456789abcdef -binary | b64url)
//! echo "$H.$P.$S"
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::core::ids::is_e164;
use crate::core::validate::ValidationError;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// The longest a token may live: `exp - iat` above this is refused ([`TokenError::TooLong`]).
pub const MAX_TTL_SECS: u64 = 3600;
/// How far in the future `iat` (or `nbf`) may be, for clock differences between the minting
/// backend and the Worker.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// Longest token accepted, in bytes; a real one is a few hundred.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The `aud` every token must carry.
pub const AUDIENCE: &str = "rbm-edge";
/// The header [`mint`] writes.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a token may be used for, as OAuth-style scope strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `messages:send`: send agent messages.
    MessagesSend,
    /// `messages:read`: read message status.
    MessagesRead,
    /// `events:send`: send agent events (typing, read receipts).
    EventsSend,
    /// `capabilities:read`: check a phone number's RCS capabilities.
    CapabilitiesRead,
    /// `dead-letters:manage`: list, replay and delete dead letters (a console page).
    DeadLettersManage,
    /// `files:upload`: upload media for rich cards (`POST /v1/files`).
    FilesUpload,
}

impl Scope {
    /// Every scope, in documentation order.
    pub const ALL: [Scope; 6] = [
        Scope::MessagesSend,
        Scope::MessagesRead,
        Scope::EventsSend,
        Scope::CapabilitiesRead,
        Scope::DeadLettersManage,
        Scope::FilesUpload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MessagesSend => "messages:send",
            Scope::MessagesRead => "messages:read",
            Scope::EventsSend => "events:send",
            Scope::CapabilitiesRead => "capabilities:read",
            Scope::DeadLettersManage => "dead-letters:manage",
            Scope::FilesUpload => "files:upload",
        }
    }

    /// The scope named exactly `s` (case-sensitive), if any.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A verified token's claims (or the claims to mint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Token id, 1 to 64 of `[A-Za-z0-9_-]`; for revocation and `max_sends` accounting.
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at (exclusive), seconds since the Unix epoch.
    pub exp: u64,
    /// Granted scopes, without duplicates after [`verify`].
    pub scopes: Vec<Scope>,
    /// The agent the token acts for; `None`: the deployment's default agent.
    pub agent_id: Option<String>,
    /// The only phone numbers the token may be used with; `None` means any.
    pub phone_numbers: Option<Vec<String>>,
    /// The most messages the token may send, if limited.
    pub max_sends: Option<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, too long, or a part is not what it should be (JSON object,
    /// 32-byte signature), or a `crit` header.
    Malformed,
    /// `alg` is missing or anything but `HS256`.
    UnsupportedAlgorithm,
    /// The signature does not match: another key, or the token was altered.
    BadSignature,
    /// `now >= exp`.
    Expired,
    /// `iat` (or `nbf`) is more than [`CLOCK_SKEW_SECS`] after now.
    NotYetValid,
    /// `exp - iat` is more than [`MAX_TTL_SECS`].
    TooLong,
    /// A claim is missing or invalid; the text says which.
    InvalidClaims(&'static str),
}

impl TokenError {
    pub fn describe(&self) -> &'static str {
        match self {
            TokenError::Malformed => "the token is not a well-formed compact JWT",
            TokenError::UnsupportedAlgorithm => "the token's alg must be HS256",
            TokenError::BadSignature => "the token's signature does not match",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet",
            TokenError::TooLong => "the token's lifetime (exp - iat) is more than 3600 seconds",
            TokenError::InvalidClaims(what) => what,
        }
    }
}

/// Why a valid token may not be used for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    MissingScope(Scope),
    PhoneNumberNotAllowed(String),
    AgentNotAllowed(String),
}

impl Denied {
    /// A sentence naming what is outside the token's scope.
    pub fn describe(&self) -> String {
        match self {
            Denied::MissingScope(scope) => {
                format!("the token does not grant the {} scope", scope.as_str())
            }
            Denied::PhoneNumberNotAllowed(number) => {
                format!("the token may not be used with the phone number {number}")
            }
            Denied::AgentNotAllowed(agent) => format!("the token may not act for the agent {agent}"),
        }
    }
}

impl Claims {
    /// Whether the token covers `scope` and, when the request names one, `phone_number`.
    /// A request that names no phone number is checked for the scope only.
    pub fn allows(&self, scope: Scope, phone_number: Option<&str>) -> Result<(), Denied> {
        if !self.scopes.contains(&scope) {
            return Err(Denied::MissingScope(scope));
        }
        if let (Some(number), Some(allowed)) = (phone_number, &self.phone_numbers) {
            if !allowed.iter().any(|a| a == number) {
                return Err(Denied::PhoneNumberNotAllowed(number.to_string()));
            }
        }
        Ok(())
    }

    /// Whether the token may act for `agent`. A token without `agent_id` acts for
    /// `default_agent` only (`RBM_AGENT_ID`), never for any agent.
    pub fn allows_agent(&self, agent: &str, default_agent: Option<&str>) -> Result<(), Denied> {
        let bound = self.agent_id.as_deref().or(default_agent);
        if bound == Some(agent) {
            Ok(())
        } else {
            Err(Denied::AgentNotAllowed(agent.to_string()))
        }
    }
}

/// The claims as [`mint`] writes them; field order here is the documented wire order.
#[derive(Serialize)]
struct WireClaims<'a> {
    iat: u64,
    exp: u64,
    jti: &'a str,
    aud: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_numbers: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sends: Option<u32>,
}

fn claims_json(claims: &Claims) -> Vec<u8> {
    let wire = WireClaims {
        iat: claims.iat,
        exp: claims.exp,
        jti: &claims.jti,
        aud: AUDIENCE,
        scope: claims.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        agent_id: claims.agent_id.as_deref(),
        phone_numbers: claims.phone_numbers.as_deref(),
        max_sends: claims.max_sends,
    };
    // Serialising plain integers and strings cannot fail; an empty payload (which `verify`
    // rejects) keeps this panic-free all the same.
    serde_json::to_vec(&wire).unwrap_or_default()
}

fn tag(key: &[u8], signing_input: &[u8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    // HMAC takes keys of any length, so this never fails; the fallback keeps it panic-free.
    if let Ok(mut mac) = HmacSha256::new_from_slice(key) {
        mac.update(signing_input);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Mints a token for `claims` under `key`. The claims are written as given, not validated:
/// a token `verify` would refuse (bad `jti`, no scopes, too long a lifetime) is minted all
/// the same, and refused when used.
pub fn mint(key: &[u8], claims: &Claims) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims_json(claims)));
    let sig = tag(key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}

/// Verifies `token` under `key` at `now_secs` and returns its claims. See the module
/// documentation for what is checked, in this order: shape, header, `alg`, signature, claims,
/// time.
pub fn verify(key: &[u8], token: &str, now_secs: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };

    let header = decode_object(header_b64)?;
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::UnsupportedAlgorithm);
    }

    let given = URL_SAFE_NO_PAD.decode(sig_b64.as_bytes()).map_err(|_| TokenError::Malformed)?;
    if given.len() != TAG_LEN {
        return Err(TokenError::Malformed);
    }
    // The signing input is the first two parts exactly as sent, with the dot between them.
    let signing_input = token.get(..header_b64.len() + 1 + payload_b64.len()).ok_or(TokenError::Malformed)?;
    if !crate::core::ct::ct_eq(&tag(key, signing_input.as_bytes()), &given) {
        return Err(TokenError::BadSignature);
    }

    let payload = decode_object(payload_b64)?;
    let claims = parse_claims(&payload)?;
    let nbf = optional_u64(&payload, "nbf")?;

    if claims.exp <= now_secs {
        return Err(TokenError::Expired);
    }
    let latest_start = now_secs.saturating_add(CLOCK_SKEW_SECS);
    if claims.iat > latest_start {
        return Err(TokenError::NotYetValid);
    }
    if nbf.is_some_and(|nbf| nbf > latest_start) {
        return Err(TokenError::NotYetValid);
    }
    let ttl = claims
        .exp
        .checked_sub(claims.iat)
        .ok_or(TokenError::InvalidClaims("the token's exp is before its iat"))?;
    if ttl > MAX_TTL_SECS {
        return Err(TokenError::TooLong);
    }
    Ok(claims)
}

/// A base64url (unpadded) part that must decode to a JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.as_bytes()).map_err(|_| TokenError::Malformed)?;
    match super::json::parse(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

fn optional_u64(map: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, TokenError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(TokenError::InvalidClaims(
            "the token's iat, exp and nbf must be whole seconds since the Unix epoch",
        )),
    }
}

fn is_valid_jti(jti: &str) -> bool {
    (1..=64).contains(&jti.len()) && jti.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_claims(map: &Map<String, Value>) -> Result<Claims, TokenError> {
    let iat = optional_u64(map, "iat")?.ok_or(TokenError::InvalidClaims("the token has no iat claim"))?;
    let exp = optional_u64(map, "exp")?.ok_or(TokenError::InvalidClaims("the token has no exp claim"))?;

    let jti = map
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| is_valid_jti(j))
        .ok_or(TokenError::InvalidClaims("the token's jti must be 1 to 64 characters of A-Z a-z 0-9 _ -"))?
        .to_string();

    let scope = map
        .get("scope")
        .and_then(Value::as_str)
        .ok_or(TokenError::InvalidClaims("the token has no scope claim"))?;
    let mut scopes = Vec::new();
    for name in scope.split_ascii_whitespace() {
        let s = Scope::parse(name)
            .ok_or(TokenError::InvalidClaims("the token's scope names an unknown scope"))?;
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if scopes.is_empty() {
        return Err(TokenError::InvalidClaims("the token grants no scope"));
    }

    const BAD_NUMBERS: TokenError =
        TokenError::InvalidClaims("the token's phone_numbers must be a non-empty array of E.164 numbers");
    let phone_numbers = match map.get("phone_numbers") {
        None => None,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut numbers = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(n) if is_e164(n) => numbers.push(n.to_string()),
                    _ => return Err(BAD_NUMBERS),
                }
            }
            Some(numbers)
        }
        Some(_) => return Err(BAD_NUMBERS),
    };

    let max_sends = match map.get("max_sends") {
        None => None,
        Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or(TokenError::InvalidClaims(
            "the token's max_sends must be a whole number up to 4294967295",
        ))?),
    };

    let aud_ok = match map.get("aud") {
        None => {
            return Err(TokenError::InvalidClaims("the token has no aud claim (it must be \"rbm-edge\")"))
        }
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(TokenError::InvalidClaims("the token's aud is not \"rbm-edge\""));
    }

    let agent_id = match map.get("agent_id") {
        None => None,
        Some(Value::String(a)) if crate::core::ids::is_agent_id(a) => Some(a.clone()),
        Some(_) => return Err(TokenError::InvalidClaims("the token's agent_id is not a valid agent id")),
    };

    Ok(Claims { jti, iat, exp, scopes, agent_id, phone_numbers, max_sends })
}

/// Validates a `POST /v1/tokens` body,
/// `{"scopes":[…],"agentId"?,"phoneNumbers":["+1…"]?,"ttlSeconds":900?,"maxSends":20?}`, into
/// the claims of a new token (`jti`, the clock and the default agent come from the shell).
/// Errors name the field, like send validation.
pub fn claims_from_request(
    body: &[u8],
    jti: String,
    now_secs: u64,
    default_agent: Option<&str>,
) -> Result<Claims, ValidationError> {
    let err = |path: &str, message: &str| ValidationError { path: path.into(), message: message.into() };
    let body = super::json::parse(body).map_err(|_| err("", "the body is not valid JSON"))?;
    let Value::Object(fields) = body else {
        return Err(err("", "the body must be a JSON object"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["scopes", "agentId", "phoneNumbers", "ttlSeconds", "maxSends"].contains(&k.as_str()))
    {
        return Err(err(
            unknown,
            "is not a token request field (scopes, agentId, phoneNumbers, ttlSeconds, maxSends)",
        ));
    }
    let strings = |key: &str| -> Result<Option<Vec<String>>, ValidationError> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| err(&format!("{key}[{i}]"), "must be a string"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(err(key, "must be an array of strings")),
        }
    };
    let whole = |key: &str, max: u64| -> Result<Option<u64>, ValidationError> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(err(key, &format!("must be a whole number from 0 to {max}"))),
            },
        }
    };

    let names = strings("scopes")?.unwrap_or_default();
    if names.is_empty() {
        return Err(err("scopes", "must list at least one scope"));
    }
    let mut scopes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let scope = Scope::parse(name).ok_or_else(|| {
            err(
                &format!("scopes[{i}]"),
                "must be one of messages:send, messages:read, events:send, capabilities:read, dead-letters:manage, files:upload",
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let phone_numbers = strings("phoneNumbers")?;
    if let Some(numbers) = &phone_numbers {
        if numbers.is_empty() {
            return Err(err("phoneNumbers", "must not be empty (leave it out to allow any number)"));
        }
        if numbers.len() > MAX_PHONE_NUMBERS {
            // More would make a token longer than MAX_TOKEN_LEN, which `verify` refuses.
            return Err(err("phoneNumbers", &format!("must list at most {MAX_PHONE_NUMBERS} numbers")));
        }
        if let Some(i) = numbers.iter().position(|n| !is_e164(n)) {
            return Err(err(&format!("phoneNumbers[{i}]"), "must be E.164, like +12223334444"));
        }
    }
    let ttl = whole("ttlSeconds", MAX_TTL_SECS)?.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 {
        return Err(err("ttlSeconds", "must be from 1 to 3600"));
    }
    let max_sends = whole("maxSends", u64::from(u32::MAX))?.and_then(|n| u32::try_from(n).ok());
    let agent_id = match fields.get("agentId") {
        None | Some(Value::Null) => default_agent.map(String::from),
        Some(Value::String(a)) if crate::core::ids::is_agent_id(a) => Some(a.clone()),
        Some(_) => return Err(err("agentId", "must be 1 to 128 letters, digits, '_', '.' or '-'")),
    };
    Ok(Claims { jti, iat: now_secs, exp: now_secs + ttl, scopes, agent_id, phone_numbers, max_sends })
}

/// Most phone numbers one minted token may list (keeps it under `MAX_TOKEN_LEN`).
pub const MAX_PHONE_NUMBERS: usize = 100;

/// Default lifetime of a minted token.
pub const DEFAULT_TTL_SECS: u64 = 900;

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-signing-key-0123456789abcdef";
    const IAT: u64 = 1767225600; // 2026-01-01T00:00:00Z

    // Known answers computed independently with a shell and OpenSSL, not with this code:
    //   b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
    //   KEY='test-signing-key-0123456789abcdef'
    //   H=$(printf '%s' '<header JSON>' | b64url)
    //   P=$(printf '%s' '<claims JSON>' | b64url)
    //   S=$(printf '%s' "$H.$P" | openssl dgst -sha256 -mac HMAC -macopt key:"$KEY" -binary | b64url)
    //   echo "$H.$P.$S"

    /// The module documentation's worked example. Header `{"alg":"HS256","typ":"JWT"}`, claims
    /// `{"iat":1767225600,"exp":1767226500,"jti":"tok_01HZX3K9Q7","aud":"rbm-edge","scope":"messages:send messages:read","agent_id":"my_agent","phone_numbers":["+14155550123"],"max_sends":10}`.
    const WORKED_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3NjcyMjU2MDAsImV4cCI6MTc2NzIyNjUwMCwianRpIjoidG9rXzAxSFpYM0s5UTciLCJhdWQiOiJyYm0tZWRnZSIsInNjb3BlIjoibWVzc2FnZXM6c2VuZCBtZXNzYWdlczpyZWFkIiwiYWdlbnRfaWQiOiJteV9hZ2VudCIsInBob25lX251bWJlcnMiOlsiKzE0MTU1NTUwMTIzIl0sIm1heF9zZW5kcyI6MTB9.5JPyQTAP71INjO3eEwfR_3pJ5w_7uRR4RXzUYyyzPk4";
    const WORKED_CLAIMS_JSON: &str = r#"{"iat":1767225600,"exp":1767226500,"jti":"tok_01HZX3K9Q7","aud":"rbm-edge","scope":"messages:send messages:read","agent_id":"my_agent","phone_numbers":["+14155550123"],"max_sends":10}"#;

    /// Header `{"alg":"HS256","typ":"JWT"}`, claims
    /// `{"iat":1767225600,"exp":1767229200,"jti":"t1","aud":"rbm-edge","scope":"capabilities:read"}`.
    const MINIMAL_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3NjcyMjU2MDAsImV4cCI6MTc2NzIyOTIwMCwianRpIjoidDEiLCJhdWQiOiJyYm0tZWRnZSIsInNjb3BlIjoiY2FwYWJpbGl0aWVzOnJlYWQifQ.1SlKrhMEKPlmS-ERR6CxXWhLUF8DT7LH2vfqrDhyWYY";

    /// As another library might write it: header `{"alg":"HS256"}` (no typ), claims in another
    /// order with an `aud` and an unknown `sub`:
    /// `{"scope":"events:send","sub":"biz-42","aud":"rbm-edge","jti":"abc-DEF_123","exp":1767226000,"iat":1767225600}`.
    const FOREIGN_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6ImV2ZW50czpzZW5kIiwic3ViIjoiYml6LTQyIiwiYXVkIjoicmJtLWVkZ2UiLCJqdGkiOiJhYmMtREVGXzEyMyIsImV4cCI6MTc2NzIyNjAwMCwiaWF0IjoxNzY3MjI1NjAwfQ.HC31MiI6iOv5ES6YZnXhFaJD3Tik4KHSOnSBEXcpguI";

    fn worked_claims() -> Claims {
        Claims {
            jti: "tok_01HZX3K9Q7".into(),
            iat: IAT,
            exp: IAT + 900,
            scopes: vec![Scope::MessagesSend, Scope::MessagesRead],
            agent_id: Some("my_agent".into()),
            phone_numbers: Some(vec!["+14155550123".into()]),
            max_sends: Some(10),
        }
    }

    fn claims(iat: u64, exp: u64) -> Claims {
        Claims {
            jti: "j".into(),
            iat,
            exp,
            scopes: vec![Scope::MessagesSend],
            agent_id: None,
            phone_numbers: None,
            max_sends: None,
        }
    }

    /// A token signed with KEY whose header and claims are the given JSON text, built from
    /// `tag` (for shapes OpenSSL vectors would not add anything to).
    fn forge(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let sig = URL_SAFE_NO_PAD.encode(tag(KEY, input.as_bytes()));
        format!("{input}.{sig}")
    }

    fn with_claims(payload: &str) -> Result<Claims, TokenError> {
        verify(KEY, &forge(HEADER_JSON, payload), IAT)
    }

    #[test]
    fn mint_requests() {
        let c = claims_from_request(
            br#"{"scopes":["messages:send","messages:read","messages:send"],"phoneNumbers":["+14155550123"],"ttlSeconds":600,"maxSends":3}"#,
            "j1".into(),
            1000,
            Some("default_agent"),
        )
        .expect("valid");
        assert_eq!(c.scopes, vec![Scope::MessagesSend, Scope::MessagesRead]);
        assert_eq!((c.iat, c.exp, c.max_sends), (1000, 1600, Some(3)));
        assert_eq!(c.agent_id.as_deref(), Some("default_agent"));
        let d = claims_from_request(
            br#"{"scopes":["capabilities:read"],"agentId":"brand_b"}"#,
            "j2".into(),
            0,
            None,
        )
        .expect("valid");
        assert_eq!(d.exp, DEFAULT_TTL_SECS);
        assert_eq!(d.agent_id.as_deref(), Some("brand_b"));
        for (body, path) in [
            (&br#"{"scopes":[]}"#[..], "scopes"),
            (br#"{"scopes":["admin"]}"#, "scopes[0]"),
            (br#"{"scopes":["messages:send"],"ttlSeconds":3601}"#, "ttlSeconds"),
            (br#"{"scopes":["messages:send"],"ttlSeconds":0}"#, "ttlSeconds"),
            (br#"{"scopes":["messages:send"],"phoneNumbers":["555"]}"#, "phoneNumbers[0]"),
            (br#"{"scopes":["messages:send"],"phoneNumbers":[]}"#, "phoneNumbers"),
            (br#"{"scopes":["messages:send"],"typo":1}"#, "typo"),
            (br#"{"scopes":"messages:send"}"#, "scopes"),
            (br#"{"scopes":[1]}"#, "scopes[0]"),
            (br#"{"scopes":["messages:send"],"maxSends":-1}"#, "maxSends"),
            (br#"{"scopes":["messages:send"],"maxSends":2.5}"#, "maxSends"),
            (br#"{"scopes":["messages:send"],"maxSends":4294967296}"#, "maxSends"),
            (br#"{"scopes":["messages:send"],"ttlSeconds":"900"}"#, "ttlSeconds"),
            (br#"{"scopes":["messages:send"],"phoneNumbers":"+12223334444"}"#, "phoneNumbers"),
            (br#"{"scopes":["messages:send"],"agentId":"a/b"}"#, "agentId"),
            (br#"{"scopes":["messages:send"],"agentId":7}"#, "agentId"),
            (b"[]", ""),
            (b"nope", ""),
        ] {
            assert_eq!(
                claims_from_request(body, "j".into(), 0, None).map_err(|e| e.path),
                Err(path.to_string())
            );
        }
        let key = b"k";
        let tok = mint(key, &c);
        assert_eq!(verify(key, &tok, 1001), Ok(c));
    }

    #[test]
    fn worked_example_known_answer() {
        assert_eq!(String::from_utf8(claims_json(&worked_claims())).expect("utf-8"), WORKED_CLAIMS_JSON);
        assert_eq!(mint(KEY, &worked_claims()), WORKED_TOKEN);
        assert_eq!(verify(KEY, WORKED_TOKEN, IAT), Ok(worked_claims()));
    }

    #[test]
    fn minimal_known_answer() {
        let c = Claims {
            jti: "t1".into(),
            iat: IAT,
            exp: IAT + 3600,
            scopes: vec![Scope::CapabilitiesRead],
            agent_id: None,
            phone_numbers: None,
            max_sends: None,
        };
        assert_eq!(mint(KEY, &c), MINIMAL_TOKEN);
        assert_eq!(verify(KEY, MINIMAL_TOKEN, IAT + 3599), Ok(c));
    }

    #[test]
    fn accepts_other_libraries_layout() {
        let c = verify(KEY, FOREIGN_TOKEN, IAT + 10).expect("foreign token");
        assert_eq!(c.jti, "abc-DEF_123");
        assert_eq!(c.scopes, vec![Scope::EventsSend]);
        assert_eq!((c.iat, c.exp), (IAT, IAT + 400));
        assert_eq!(c.phone_numbers, None);
        assert_eq!(c.max_sends, None);
    }

    #[test]
    fn round_trip() {
        let mut c = claims(IAT, IAT + 60);
        c.scopes = Scope::ALL.to_vec();
        c.phone_numbers = Some(vec!["+447700900123".into(), "+14155550123".into()]);
        c.max_sends = Some(u32::MAX);
        assert_eq!(verify(KEY, &mint(KEY, &c), IAT), Ok(c));
        // another key does not verify
        assert_eq!(
            verify(b"another key", &mint(KEY, &claims(IAT, IAT + 60)), IAT),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_rejected() {
        let token = WORKED_TOKEN;
        let parts: Vec<&str> = token.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);

        // header re-encoded with another (still HS256) JSON: MAC no longer matches
        let h2 = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWS"}"#);
        assert_eq!(verify(KEY, &format!("{h2}.{p}.{s}"), IAT), Err(TokenError::BadSignature));
        // claims changed (max_sends 10 -> 99), signature kept
        let p2 = URL_SAFE_NO_PAD.encode(WORKED_CLAIMS_JSON.replace(":10}", ":99}"));
        assert_eq!(verify(KEY, &format!("{h}.{p2}.{s}"), IAT), Err(TokenError::BadSignature));
        // one bit of the signature flipped
        let mut raw = URL_SAFE_NO_PAD.decode(s).expect("vector");
        raw[0] ^= 1;
        let s2 = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(verify(KEY, &format!("{h}.{p}.{s2}"), IAT), Err(TokenError::BadSignature));
        // signature truncated, extended, padded, or in the standard alphabet
        assert_eq!(verify(KEY, &format!("{h}.{p}.{}", &s[..42]), IAT), Err(TokenError::Malformed));
        assert_eq!(verify(KEY, &format!("{h}.{p}.{s}AAAA"), IAT), Err(TokenError::Malformed));
        assert_eq!(verify(KEY, &format!("{h}.{p}.{s}="), IAT), Err(TokenError::Malformed));
        assert_eq!(verify(KEY, &format!("{h}.{p}.{}", s.replace('_', "/")), IAT), Err(TokenError::Malformed));
        // a character of the claims part made non-base64url: the MAC is checked (and misses)
        // before the claims are even decoded
        let p3 = format!("{}*{}", &p[..10], &p[11..]);
        assert_eq!(verify(KEY, &format!("{h}.{p3}.{s}"), IAT), Err(TokenError::BadSignature));
        // the header part garbled is malformed
        assert_eq!(verify(KEY, &format!("x{h}.{p}.{s}"), IAT), Err(TokenError::Malformed));
    }

    #[test]
    fn shape() {
        let (h, p, s) = {
            let v: Vec<&str> = MINIMAL_TOKEN.split('.').collect();
            (v[0], v[1], v[2])
        };
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "a.b".into(),
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}.{p}.{s}."),
            format!(" {h}.{p}.{s}"),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{s}{}", "A".repeat(MAX_TOKEN_LEN)),
        ] {
            assert_eq!(verify(KEY, &bad, IAT), Err(TokenError::Malformed), "{bad:?}");
        }
        // header or claims that are valid base64url of something other than a JSON object
        assert_eq!(verify(KEY, &forge("[]", "{}"), IAT), Err(TokenError::Malformed));
        assert_eq!(verify(KEY, &forge("not json", "{}"), IAT), Err(TokenError::Malformed));
        assert_eq!(with_claims("[1,2]"), Err(TokenError::Malformed));
        assert_eq!(with_claims("not json"), Err(TokenError::Malformed));
        assert_eq!(with_claims(""), Err(TokenError::Malformed));
        // a crit header is an extension we do not implement
        assert_eq!(
            verify(KEY, &forge(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, "{}"), IAT),
            Err(TokenError::Malformed)
        );
        // the length limit is inclusive
        let mut c = claims(IAT, IAT + 60);
        c.jti = "j".repeat(64);
        let t = mint(KEY, &c);
        assert!(t.len() <= MAX_TOKEN_LEN);
        assert!(verify(KEY, &t, IAT).is_ok());
    }

    #[test]
    fn only_hs256() {
        let p = URL_SAFE_NO_PAD.encode(WORKED_CLAIMS_JSON);
        let unsigned = |header: &str| format!("{}.{p}.", URL_SAFE_NO_PAD.encode(header));
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"alg":"HS512"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":["HS256"]}"#,
            r#"{"typ":"JWT"}"#,
            r#"{}"#,
        ] {
            // unsigned, and also carrying a valid HS256 MAC over that header (the alg check
            // comes first either way)
            assert_eq!(
                verify(KEY, &unsigned(header), IAT),
                Err(TokenError::UnsupportedAlgorithm),
                "{header}"
            );
            assert_eq!(
                verify(KEY, &forge(header, WORKED_CLAIMS_JSON), IAT),
                Err(TokenError::UnsupportedAlgorithm),
                "{header}"
            );
        }
        // typ is optional and not checked
        assert!(verify(KEY, &forge(r#"{"alg":"HS256"}"#, WORKED_CLAIMS_JSON), IAT).is_ok());
        assert!(verify(KEY, &forge(r#"{"typ":"at+jwt","alg":"HS256","kid":"k1"}"#, WORKED_CLAIMS_JSON), IAT)
            .is_ok());
    }

    #[test]
    fn expiry_with_an_injected_clock() {
        let exp = IAT + 900;
        let t = mint(KEY, &claims(IAT, exp));
        assert!(verify(KEY, &t, IAT).is_ok());
        assert!(verify(KEY, &t, exp - 1).is_ok());
        assert_eq!(verify(KEY, &t, exp), Err(TokenError::Expired));
        assert_eq!(verify(KEY, &t, exp + 1), Err(TokenError::Expired));
        assert_eq!(verify(KEY, &t, u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn issued_in_the_future_within_skew() {
        let t = mint(KEY, &claims(IAT, IAT + 900));
        assert!(verify(KEY, &t, IAT - 60).is_ok());
        assert_eq!(verify(KEY, &t, IAT - 61), Err(TokenError::NotYetValid));
        // iat in the past is fine
        assert!(verify(KEY, &t, IAT + 60).is_ok());
        // nbf honoured with the same allowance
        let nbf = |n: u64| {
            format!(
                r#"{{"iat":{IAT},"exp":{},"nbf":{n},"jti":"j","aud":"rbm-edge","scope":"messages:send"}}"#,
                IAT + 900
            )
        };
        assert!(with_claims(&nbf(IAT + 60)).is_ok());
        assert_eq!(with_claims(&nbf(IAT + 61)), Err(TokenError::NotYetValid));
        let not_a_number = format!(
            r#"{{"iat":{IAT},"exp":{},"nbf":"soon","jti":"j","aud":"rbm-edge","scope":"messages:send"}}"#,
            IAT + 900
        );
        assert!(matches!(with_claims(&not_a_number), Err(TokenError::InvalidClaims(_))));
    }

    #[test]
    fn lifetime_limit() {
        assert!(verify(KEY, &mint(KEY, &claims(IAT, IAT + 3600)), IAT).is_ok());
        assert_eq!(verify(KEY, &mint(KEY, &claims(IAT, IAT + 3601)), IAT), Err(TokenError::TooLong));
        // exp before iat: a token that was never valid
        assert!(matches!(
            verify(KEY, &mint(KEY, &claims(IAT + 10, IAT + 5)), IAT),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    #[test]
    fn claim_validation() {
        let no_aud = |extra: &str| {
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"j","scope":"messages:send"{extra}}}"#, IAT + 60)
        };
        let base = |extra: &str| no_aud(&format!(r#","aud":"rbm-edge"{extra}"#));
        assert!(with_claims(&base("")).is_ok());
        // unknown claims are ignored
        assert!(with_claims(&base(r#","sub":"x","iss":"y","extra":{"a":[1]}"#)).is_ok());
        let invalid = [
            // required claims missing or mistyped
            r#"{"exp":1767225660,"jti":"j","scope":"messages:send"}"#.to_string(),
            format!(r#"{{"iat":{IAT},"jti":"j","scope":"messages:send"}}"#),
            format!(r#"{{"iat":{IAT},"exp":{},"scope":"messages:send"}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"j"}}"#, IAT + 60),
            format!(r#"{{"iat":"{IAT}","exp":{},"jti":"j","scope":"messages:send"}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT}.5,"exp":{},"jti":"j","scope":"messages:send"}}"#, IAT + 60),
            format!(r#"{{"iat":-1,"exp":{},"jti":"j","scope":"messages:send"}}"#, IAT + 60),
            // jti shape
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"","scope":"messages:send"}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"a b","scope":"messages:send"}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"a.b","scope":"messages:send"}}"#, IAT + 60),
            format!(
                r#"{{"iat":{IAT},"exp":{},"jti":"{}","scope":"messages:send"}}"#,
                IAT + 60,
                "x".repeat(65)
            ),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":7,"scope":"messages:send"}}"#, IAT + 60),
            // scopes
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"j","scope":""}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"j","scope":"messages:send admin"}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"j","scope":"Messages:Send"}}"#, IAT + 60),
            format!(r#"{{"iat":{IAT},"exp":{},"jti":"j","scope":["messages:send"]}}"#, IAT + 60),
            // phone numbers
            base(r#","phone_numbers":[]"#),
            base(r#","phone_numbers":"+14155550123""#),
            base(r#","phone_numbers":["14155550123"]"#),
            base(r#","phone_numbers":["+14155550123",null]"#),
            base(r#","phone_numbers":["+1 415 555 0123"]"#),
            // max_sends
            base(r#","max_sends":-1"#),
            base(r#","max_sends":4294967296"#),
            base(r#","max_sends":"10""#),
            // audience: required, and ours
            no_aud(""),
            no_aud(r#","aud":"someone-else""#),
            no_aud(r#","aud":["someone-else"]"#),
            no_aud(r#","aud":42"#),
            // agent
            base(r#","agent_id":"a b""#),
            base(r#","agent_id":7"#),
        ];
        for payload in &invalid {
            let r = with_claims(payload);
            assert!(matches!(r, Err(TokenError::InvalidClaims(_))), "{payload}: {r:?}");
        }
        // accepted optional claims
        let c = with_claims(&base(r#","max_sends":0,"agent_id":"brand_a""#)).expect("aud string");
        assert_eq!(c.max_sends, Some(0));
        assert_eq!(c.agent_id.as_deref(), Some("brand_a"));
        assert!(with_claims(&no_aud(r#","aud":["other","rbm-edge"]"#)).is_ok());
        // duplicate and extra-spaced scopes are accepted and deduplicated
        let c = with_claims(&format!(
            r#"{{"iat":{IAT},"exp":{},"jti":"j","aud":"rbm-edge","scope":" messages:read  messages:read events:send"}}"#,
            IAT + 60
        ))
        .expect("spaced scopes");
        assert_eq!(c.scopes, vec![Scope::MessagesRead, Scope::EventsSend]);
    }

    #[test]
    fn scopes_parse_and_print() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("messages:send"), Some(Scope::MessagesSend));
        assert_eq!(Scope::parse("capabilities:read"), Some(Scope::CapabilitiesRead));
        assert_eq!(Scope::parse("messages:*"), None);
        assert_eq!(Scope::parse(""), None);
    }

    #[test]
    fn allows_checks_scope_then_number() {
        let c = worked_claims();
        assert_eq!(c.allows(Scope::MessagesSend, Some("+14155550123")), Ok(()));
        assert_eq!(c.allows(Scope::MessagesRead, None), Ok(()));
        assert_eq!(
            c.allows(Scope::MessagesSend, Some("+14155550124")),
            Err(Denied::PhoneNumberNotAllowed("+14155550124".into()))
        );
        assert_eq!(
            c.allows(Scope::CapabilitiesRead, Some("+14155550123")),
            Err(Denied::MissingScope(Scope::CapabilitiesRead))
        );
        // missing scope is reported before the number
        assert_eq!(
            c.allows(Scope::EventsSend, Some("+19999999999")),
            Err(Denied::MissingScope(Scope::EventsSend))
        );
        // no phone_numbers claim: any number
        let any = claims(IAT, IAT + 60);
        assert_eq!(any.allows(Scope::MessagesSend, Some("+447700900123")), Ok(()));
        assert_eq!(any.allows(Scope::MessagesRead, None), Err(Denied::MissingScope(Scope::MessagesRead)));
    }

    #[test]
    fn tokens_are_bound_to_one_agent() {
        let c = worked_claims(); // agent_id my_agent
        assert_eq!(c.allows_agent("my_agent", Some("other_default")), Ok(()));
        assert_eq!(
            c.allows_agent("someone_elses_agent", Some("my_agent")),
            Err(Denied::AgentNotAllowed("someone_elses_agent".into()))
        );
        // no agent_id claim: the deployment's default agent, and only it
        let unbound = claims(IAT, IAT + 60);
        assert_eq!(unbound.allows_agent("default", Some("default")), Ok(()));
        assert!(unbound.allows_agent("other", Some("default")).is_err());
        assert!(unbound.allows_agent("default", None).is_err());
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            Denied::MissingScope(Scope::MessagesSend).describe(),
            "the token does not grant the messages:send scope"
        );
        assert_eq!(
            Denied::PhoneNumberNotAllowed("+14155550124".into()).describe(),
            "the token may not be used with the phone number +14155550124"
        );
        for e in [
            TokenError::Malformed,
            TokenError::UnsupportedAlgorithm,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::TooLong,
        ] {
            assert!(!e.describe().is_empty());
        }
        assert_eq!(
            TokenError::InvalidClaims("the token grants no scope").describe(),
            "the token grants no scope"
        );
    }
}
