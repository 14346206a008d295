//! The HTTP surface: one routing table, small handlers, errors mapped once (`ApiError`).

pub mod auth;
pub mod cors;
pub mod dead_letters;
pub mod messages;
pub mod phones;
pub mod tokens;
pub mod webhook;

use std::rc::Rc;

use futures_util::StreamExt;

use worker::{Env, Method, Request, Response};

use crate::config::Config;
use crate::core::token::Scope;
use crate::core::validate::is_agent_id;
use crate::error::{json_response, ApiError};
use auth::Caller;

/// Per-request state, built once: the isolate's config, the bindings and the clock.
pub struct Cx {
    pub env: Env,
    pub cfg: Rc<Config>,
    /// Read once per request in the shell; the core never reads a clock.
    pub now_ms: u64,
}

/// Routes one request. Never fails: every error becomes its JSON response here.
pub async fn handle(req: Request, env: Env) -> Response {
    let cfg = Config::get(&env);
    let cx = Cx { env, cfg, now_ms: worker::Date::now().as_millis() };
    let path = req.path();
    let api = path.starts_with("/v1/");
    let origin = if api { req.headers().get("origin").ok().flatten() } else { None };
    if api && req.method() == Method::Options {
        return cors::preflight(origin.as_deref(), &cx.cfg);
    }
    let mut resp = match route(req, &path, &cx).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status() >= 500 {
                crate::log::error(
                    "request failed",
                    serde_json::json!({"path": path, "code": e.code(), "message": e.message()}),
                );
            }
            e.into_response()
        }
    };
    if api {
        cors::decorate(&mut resp, origin.as_deref(), &cx.cfg);
    }
    resp
}

async fn route(req: Request, path: &str, cx: &Cx) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // workers-rs maps methods it does not know (PROPFIND, PURGE, …) to GET: check the raw one.
    if !KNOWN_METHODS.contains(&req.inner().method().as_str()) {
        return Err(ApiError::MethodNotAllowed);
    }
    let method = req.method();
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
            let caller = authorize(&req, cx)?;
            messages::send(req, &caller, cx).await
        }
        ["v1", "messages", id] => {
            allow(&method, &[Method::Get, Method::Delete])?;
            let caller = authorize(&req, cx)?;
            if method == Method::Get {
                messages::status(id, &caller, cx).await
            } else {
                messages::revoke(&req, id, &caller, cx).await
            }
        }
        ["v1", "phones", phone, "events"] => {
            allow(&method, &[Method::Post])?;
            let caller = authorize(&req, cx)?;
            let phone = phones::phone_from_segment(phone)?;
            caller.require(Scope::EventsSend, Some(&phone))?;
            phones::event(req, &phone, cx).await
        }
        ["v1", "phones", phone, "capabilities"] => {
            allow(&method, &[Method::Get])?;
            let caller = authorize(&req, cx)?;
            let phone = phones::phone_from_segment(phone)?;
            caller.require(Scope::CapabilitiesRead, Some(&phone))?;
            phones::capabilities(&req, &phone, cx).await
        }
        ["v1", "tokens"] => {
            allow(&method, &[Method::Post])?;
            authorize(&req, cx)?.require_api_key()?;
            tokens::create(req, cx).await
        }
        ["v1", "dead-letters"] => {
            allow(&method, &[Method::Get])?;
            authorize(&req, cx)?.require_api_key()?;
            dead_letters::list(&req, cx).await
        }
        ["v1", "dead-letters", id] => {
            allow(&method, &[Method::Delete])?;
            authorize(&req, cx)?.require_api_key()?;
            dead_letters::delete(id, cx).await
        }
        ["v1", "dead-letters", id, "replay"] => {
            allow(&method, &[Method::Post])?;
            authorize(&req, cx)?.require_api_key()?;
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

fn authorize(req: &Request, cx: &Cx) -> Result<Caller, ApiError> {
    cx.cfg.check()?;
    auth::caller(req, cx)
}

/// Reads a request body of at most `max` bytes: 413 beyond, announced or not. The body is
/// streamed and counted, so a chunked upload with no Content-Length never makes the isolate
/// hold more than `max` (+ one chunk). The rest of an oversized body is read and discarded
/// rather than abandoned: dropping a half-read request stream in workerd takes the isolate
/// down with it ("worker restarted mid-request" for the next request).
pub async fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let announced =
        req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<usize>().ok());
    if announced.is_some_and(|n| n > max) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new()); // no body at all
    };
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    let mut too_large = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::InvalidRequest("The body could not be read.".into()))?;
        if too_large || body.len() + chunk.len() > max {
            too_large = true;
            body = Vec::new();
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if too_large {
        return Err(ApiError::PayloadTooLarge(max));
    }
    Ok(body)
}

/// One query parameter, percent-decoded.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    let url = req.url().ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The agent for a call: the caller's, else `RBM_AGENT_ID`. Validated: it goes into a URL.
pub fn agent_id(given: Option<String>, cx: &Cx) -> Result<String, ApiError> {
    let agent = given.or_else(|| cx.cfg.agent_id.clone()).ok_or(ApiError::ConfigMissing("RBM_AGENT_ID"))?;
    if is_agent_id(&agent) {
        Ok(agent)
    } else {
        Err(ApiError::InvalidRequest("agentId must be 1 to 128 letters, digits, '_', '.' or '-'.".into()))
    }
}
