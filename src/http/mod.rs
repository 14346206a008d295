//! The HTTP surface: one routing table, small handlers, errors mapped once (`ApiError`).

pub mod auth;
pub mod conversations;
pub mod cors;
pub mod dead_letters;
pub mod files;
pub mod messages;
pub mod phones;
pub mod reachability;
pub mod request;
pub mod tokens;
pub mod webhook;

use std::rc::Rc;

use worker::{Context, Env, Method, Response};

use crate::config::Config;
use crate::core::ids::is_agent_id;
use crate::core::token::Scope;
use crate::error::{json_response, ApiError};
use auth::Caller;
pub use request::Request;

/// Per-request state, built once: the isolate's config, the bindings and the clock.
pub struct Cx {
    pub env: Env,
    pub cfg: Rc<Config>,
    /// Read once per request in the shell; the core never reads a clock.
    pub now_ms: u64,
    /// For work that must not hold the response (`wait_until`).
    pub ctx: Context,
}

/// Routes one request. Never fails: every error becomes its JSON response here.
pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let cfg = Config::get(&env);
    let cx = Cx { env, cfg, now_ms: crate::runtime::now_ms(), ctx };
    let url = req.url();
    let path = crate::core::query::path(&url);
    // Routing ignores repeated leading slashes (`//v1/messages`); so must CORS.
    let api = path.trim_start_matches('/').starts_with("v1/");
    let raw_method = req.raw_method();
    let origin = if api { req.header("origin") } else { None };
    if api && raw_method == "OPTIONS" {
        return cors::preflight(origin.as_deref(), &cx.cfg);
    }
    let mut resp = match route(req, path, &raw_method, &cx).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status() >= 500 {
                crate::log::error(
                    "request failed",
                    serde_json::json!({"path": crate::core::redact::redact_path(path), "code": e.code(), "message": e.message()}),
                );
            }
            e.into_response()
        }
    };
    // A WebSocket answer (101) goes back untouched.
    if api && resp.status_code() != 101 {
        cors::decorate(&mut resp, origin.as_deref(), &cx.cfg);
    }
    resp
}

async fn route(req: Request, path: &str, raw_method: &str, cx: &Cx) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // workers-rs's Method maps methods it does not know (PROPFIND, PURGE, …) to GET.
    if !KNOWN_METHODS.contains(&raw_method) {
        return Err(ApiError::MethodNotAllowed);
    }
    let method = Method::from(raw_method.to_string());
    match segments.as_slice() {
        ["healthz"] => {
            allow(&method, &[Method::Get, Method::Head])?;
            Ok(json_response(200, &serde_json::json!({"ok": true, "version": env!("CARGO_PKG_VERSION")})))
        }
        ["webhook"] => {
            allow(&method, &[Method::Post])?;
            cx.cfg.check()?;
            webhook::handle(req, cx).await
        }
        ["v1", "messages"] => {
            allow(&method, &[Method::Post])?;
            let caller = authorize(&req, cx).await?;
            messages::send(req, &caller, cx).await
        }
        ["v1", "messages", id] => {
            allow(&method, &[Method::Get, Method::Delete])?;
            let caller = authorize(&req, cx).await?;
            if method == Method::Get {
                messages::status(id, &caller, cx).await
            } else {
                messages::revoke(&req, id, &caller, cx).await
            }
        }
        ["v1", "phones", phone, "events"] => {
            allow(&method, &[Method::Post])?;
            let caller = authorize(&req, cx).await?;
            let phone = phones::phone_from_segment(phone)?;
            caller.require(Scope::EventsSend, Some(&phone))?;
            let agent = agent_for(query_param(&req, "agentId"), &caller, cx)?;
            phones::event(req, &phone, &agent, cx).await
        }
        ["v1", "phones", phone, "capabilities"] => {
            allow(&method, &[Method::Get])?;
            let caller = authorize(&req, cx).await?;
            let phone = phones::phone_from_segment(phone)?;
            caller.require(Scope::CapabilitiesRead, Some(&phone))?;
            let agent = agent_for(query_param(&req, "agentId"), &caller, cx)?;
            phones::capabilities(&phone, &agent, cx).await
        }
        ["v1", "phones", phone, "messages"] => {
            allow(&method, &[Method::Get])?;
            let caller = authorize(&req, cx).await?;
            conversations::history(&req, &phones::phone_from_segment(phone)?, &caller, cx).await
        }
        ["v1", "phones", phone, "live"] => {
            allow(&method, &[Method::Get])?;
            conversations::live(&req, &phones::phone_from_segment(phone)?, cx).await
        }
        ["v1", "phones", phone, "conversation"] => {
            allow(&method, &[Method::Delete])?;
            let caller = authorize(&req, cx).await?;
            conversations::erase(&req, &phones::phone_from_segment(phone)?, &caller, cx).await
        }
        ["v1", "reachability"] => {
            allow(&method, &[Method::Post])?;
            let caller = authorize(&req, cx).await?;
            reachability::check(req, &caller, cx).await
        }
        ["v1", "files"] => {
            allow(&method, &[Method::Post])?;
            let caller = authorize(&req, cx).await?;
            files::create(req, &caller, cx).await
        }
        ["v1", "tokens"] => {
            allow(&method, &[Method::Post])?;
            authorize(&req, cx).await?.require_api_key()?;
            tokens::create(req, cx).await
        }
        ["v1", "dead-letters"] => {
            allow(&method, &[Method::Get])?;
            authorize(&req, cx).await?.require_for(Scope::DeadLettersManage, None)?;
            dead_letters::list(&req, cx).await
        }
        ["v1", "dead-letters", id] => {
            allow(&method, &[Method::Delete])?;
            authorize(&req, cx).await?.require_for(Scope::DeadLettersManage, None)?;
            dead_letters::delete(id, cx).await
        }
        ["v1", "dead-letters", id, "replay"] => {
            allow(&method, &[Method::Post])?;
            authorize(&req, cx).await?.require_for(Scope::DeadLettersManage, None)?;
            dead_letters::replay(id, cx).await
        }
        _ => Err(ApiError::NotFound(format!("No route for {path}."))),
    }
}

const KNOWN_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn allow(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

/// Authenticates the caller; a token caller also spends one unit of its rate limit, on every
/// route.
async fn authorize(req: &Request, cx: &Cx) -> Result<Caller, ApiError> {
    cx.cfg.check()?;
    let caller = auth::caller(req, cx)?;
    if let Caller::Token(claims) = &caller {
        crate::store::limits::take_request(&cx.env, claims).await?;
    }
    Ok(caller)
}

/// One query parameter, percent-decoded.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    crate::core::query::param(&req.url(), name)
}

/// The agent for a call: the one named, else the token's own, else `RBM_AGENT_ID`; validated
/// (it goes into a URL), and one a token may act for (403 otherwise).
pub fn agent_for(given: Option<String>, caller: &Caller, cx: &Cx) -> Result<String, ApiError> {
    let token_agent = match caller {
        Caller::Token(claims) => claims.agent_id.clone(),
        Caller::ApiKey => None,
    };
    let agent = given
        .or(token_agent)
        .or_else(|| cx.cfg.agent_id.clone())
        .ok_or(ApiError::ConfigMissing("RBM_AGENT_ID"))?;
    if !is_agent_id(&agent) {
        return Err(ApiError::InvalidRequest(
            "agentId must be 1 to 128 letters, digits, '_', '.' or '-'.".into(),
        ));
    }
    caller.require_agent(&agent, cx)?;
    Ok(agent)
}
