//! The HTTP surface: one routing table, small handlers, errors mapped once (`ApiError`).

pub mod auth;
pub mod messages;
pub mod webhook;

use std::rc::Rc;

use worker::{Context, Env, Method, Request, Response};

use crate::config::Config;
use crate::error::{json_response, ApiError};

/// Per-request state, built once: the isolate's config, the bindings and the clock.
pub struct Cx {
    pub env: Env,
    pub ctx: Context,
    pub cfg: Rc<Config>,
    /// Read once per request in the shell; the core never reads a clock.
    pub now_ms: u64,
}

/// Routes one request. Never fails: every error becomes its JSON response here.
pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let cfg = Config::get(&env);
    let cx = Cx {
        env,
        ctx,
        cfg,
        now_ms: worker::Date::now().as_millis(),
    };
    match route(req, &cx).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status() >= 500 {
                crate::log::error(
                    "request failed",
                    serde_json::json!({"code": e.code(), "message": e.message()}),
                );
            }
            e.into_response()
        }
    }
}

async fn route(req: Request, cx: &Cx) -> Result<Response, ApiError> {
    let path = req.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method();
    match segments.as_slice() {
        ["healthz"] => {
            allow(&method, &[Method::Get, Method::Head])?;
            Ok(json_response(
                200,
                &serde_json::json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}),
            ))
        }
        ["webhook"] => {
            allow(&method, &[Method::Post])?;
            cx.cfg.check()?;
            webhook::handle(req, cx).await
        }
        ["v1", "messages", id] => {
            allow(&method, &[Method::Get])?;
            cx.cfg.check()?;
            let id = (*id).to_string();
            auth::require_api_key(&req, &cx.cfg)?;
            messages::status(&id, cx).await
        }
        _ => Err(ApiError::NotFound(format!("No route for {path}."))),
    }
}

fn allow(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}
