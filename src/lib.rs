//! rbm-edge: a Cloudflare Worker for RCS for Business (RBM) agents.
//!
//! `core/` is the pure RBM logic (no Workers types, tested natively); everything else is the
//! thin Workers shell around it: `http/` (routes), `store/` (KV), `pipeline/` (what happens to
//! a verified event), `config`, `error`, `log`. This file only holds the entry points.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod config;
#[cfg(target_arch = "wasm32")]
mod conversation;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod faults;
#[cfg(target_arch = "wasm32")]
mod google;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod log;
#[cfg(target_arch = "wasm32")]
mod pipeline;
#[cfg(target_arch = "wasm32")]
mod runtime;
#[cfg(target_arch = "wasm32")]
mod store;

#[cfg(target_arch = "wasm32")]
#[worker::event(fetch)]
async fn fetch(
    req: worker::Request,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<worker::Response> {
    Ok(http::handle(req, env, ctx).await)
}

/// Consumer of the `EVENTS` queue and of its dead-letter queue (see `pipeline::queue`).
/// Exported by hand, as `#[worker::event(queue)]` would (same name and arguments): the macro
/// hands over a `worker::MessageBatch`, whose retry options go through serde_wasm_bindgen.
/// Never fails: each message is acked or retried on its own.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub async fn queue(
    batch: worker::worker_sys::MessageBatch,
    env: worker::Env,
    _ctx: wasm_bindgen::JsValue,
) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    pipeline::queue::consume(batch, env).await;
    Ok(wasm_bindgen::JsValue::UNDEFINED)
}
