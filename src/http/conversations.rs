//! `/v1/phones/{phoneNumber}/messages | live | conversation`: a conversation's history, its
//! live frames, and erasing it. The conversation object answers; this module authenticates.

use worker::{Method, Response};

use super::auth::{self, Caller};
use super::{agent_for, query_param, Cx, Request};
use crate::conversation::client as conversation;
use crate::core::conversation::object_name;
use crate::core::token::Scope;
use crate::error::ApiError;

/// `GET /v1/phones/{p}/messages?limit=&before=&agentId=`: newest first, with a cursor.
pub async fn history(req: &Request, phone: &str, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    caller.require(Scope::MessagesRead, Some(phone))?;
    let agent = agent_for(query_param(req, "agentId"), caller, cx)?;
    let url = req.inner().url();
    let mut path = String::from("/history?");
    for name in ["limit", "before"] {
        if let Some(v) = crate::core::query::param(&url, name) {
            // Numbers and cursors are base64url: anything else is refused, never trimmed.
            if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ApiError::InvalidRequest(format!("{name} is not valid.")));
            }
            path.push_str(&format!("{name}={v}&"));
        }
    }
    conversation::relay(&cx.env, &object_name(&agent, phone), Method::Get, &path, None).await
}

/// `GET /v1/phones/{p}/live`: a WebSocket of the conversation's frames. The credential comes
/// as the subprotocol `bearer.<token>` next to `rbm-edge.v1`; 401 before the upgrade when it
/// is missing or bad, 403 for an Origin that is not allowed.
pub async fn live(req: &Request, phone: &str, cx: &Cx) -> Result<Response, ApiError> {
    let upgrade = req.header("upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::InvalidRequest(
            "This route is a WebSocket: open it with the subprotocols rbm-edge.v1 and bearer.<token>.".into(),
        ));
    }
    if let Some(origin) = req.header("origin") {
        let url = req.inner().url();
        if origin != own_origin(&url) && !cx.cfg.allowed_origins.contains(&origin) {
            return Err(ApiError::Forbidden(format!(
                "The origin {origin} is not allowed (ALLOWED_ORIGINS)."
            )));
        }
    }
    let credential = auth::subprotocol_credential(req).ok_or(ApiError::Unauthorized(
        "Offer the WebSocket subprotocols rbm-edge.v1 and bearer.<API key or token>.",
    ))?;
    cx.cfg.check()?;
    let caller = auth::authenticate(Some(credential), cx)?;
    if let Caller::Token(claims) = &caller {
        crate::store::limits::take_request(&cx.env, claims).await?;
    }
    caller.require(Scope::MessagesRead, Some(phone))?;
    let agent = agent_for(query_param(req, "agentId"), &caller, cx)?;
    conversation::relay(&cx.env, &object_name(&agent, phone), Method::Get, "/live", Some(req)).await
}

/// `DELETE /v1/phones/{p}/conversation` (API keys only): erase the stored content now.
pub async fn erase(req: &Request, phone: &str, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    caller.require_api_key()?;
    let agent = agent_for(query_param(req, "agentId"), caller, cx)?;
    conversation::relay(&cx.env, &object_name(&agent, phone), Method::Delete, "/conversation", None).await
}

/// `scheme://host[:port]` of the request URL (a page served by this Worker is same-origin).
fn own_origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    url[start..].find('/').map_or(url, |i| &url[..start + i])
}
